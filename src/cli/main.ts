/** The `vhdx` command line: dispatch, help, and the one-line error contract. */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { VhdxError } from '../format/errors.js';
import type { Command } from './command.js';

/** Commands load on demand: a run pays only for the one it uses. */
const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'create', summary: 'create a new empty image (dynamic by default, as Hyper-V)', load: async () => (await import('./commands/create.js')).create },
  { name: 'info', summary: 'describe an image: type, sizes, identifiers, log state', load: async () => (await import('./commands/info.js')).info },
  { name: 'map', summary: 'show where each range of the virtual disk lives', load: async () => (await import('./commands/map.js')).map },
  { name: 'read', summary: 'write bytes of the virtual disk to stdout', load: async () => (await import('./commands/read.js')).read },
  { name: 'write', summary: 'write bytes into the virtual disk (a repeated byte, or a file or stdin)', load: async () => (await import('./commands/write.js')).write },
  { name: 'convert', summary: 'convert between VHDX and raw (either way, or VHDX to VHDX with a new shape)', load: async () => (await import('./commands/convert.js')).convert },
  { name: 'check', summary: 'check an image for corruption and leaked space; --repair fixes what it safely can', load: async () => (await import('./commands/check.js')).check },
  { name: 'compare', summary: 'compare the virtual disks of two images (raw or VHDX); exit 0 equal, 1 different', load: async () => (await import('./commands/compare.js')).compare },
  { name: 'demo', summary: 'create a sample image, write, flush, reopen, verify, show info and map', load: async () => (await import('./commands/demo.js')).demo },
];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: vhdx COMMAND [options]',
    '',
    'Create, read, write, convert and inspect Microsoft VHDX virtual disk images.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'global options: --help (also after a command), --version, --debug (stack traces on errors)',
    'sizes accept K, M, G, T suffixes (powers of 1024).',
  ].join('\n');
}

function commandHelp(c: Command): string {
  const opts = Object.entries(c.options).map(([name, o]) => `  --${name}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(26) + o.description);
  return [`usage: ${c.usage}`, '', c.summary, '', ...(opts.length ? ['options:', ...opts, ''] : []), 'examples:', ...c.examples.map((e) => `  ${e}`)].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  let fileForErrors: string | undefined;
  try {
    if (args.length === 0 || args[0] === '--help' || args[0] === '-h' || args[0] === 'help') {
      process.stdout.write(mainHelp() + '\n');
      return args.length === 0 ? 2 : 0;
    }
    if (args[0] === '--version' || args[0] === '-V') {
      process.stdout.write(`vhdx ${version()}\n`);
      return 0;
    }
    const entry = COMMANDS.find((c) => c.name === args[0]);
    if (!entry) throw new VhdxError('INVALID_ARGUMENT', `unknown command ${JSON.stringify(args[0])} (see vhdx --help)`);
    const command = await entry.load();
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
    for (const [name, o] of Object.entries(command.options)) options[name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
    let parsed;
    try {
      parsed = parseArgs({ args: args.slice(1), options, allowPositionals: true, strict: true });
    } catch (error) {
      throw new VhdxError('INVALID_ARGUMENT', `${command.name}: ${(error as Error).message.split('\n')[0]}`);
    }
    if (parsed.values.help) {
      process.stdout.write(commandHelp(command) + '\n');
      return 0;
    }
    if (parsed.positionals.length !== command.positionals.length) {
      throw new VhdxError('INVALID_ARGUMENT', `${command.name} takes ${command.positionals.join(' ') || 'no arguments'} (usage: ${command.usage})`);
    }
    fileForErrors = parsed.positionals[0];
    return (await command.run({ positionals: parsed.positionals, values: parsed.values as CommandValues })) ?? 0;
  } catch (error) {
    if (error instanceof VhdxError) {
      const file = error.file ?? (error.code === 'INVALID_ARGUMENT' ? undefined : fileForErrors);
      const where = error.offset === undefined ? '' : ` (at file offset ${error.offset})`;
      process.stderr.write(`vhdx: ${file === undefined ? '' : `${file}: `}${error.message}${where}\n`);
      if (debug) process.stderr.write(`${error.stack}\n`);
      return error.code === 'INVALID_ARGUMENT' ? 2 : 1;
    }
    const e = error as NodeJS.ErrnoException;
    if (e?.code === 'EPIPE') return 0;
    process.stderr.write(`vhdx: internal error: ${e?.message ?? String(error)}${debug ? '' : ' (run with --debug for details)'}\n`);
    if (debug) process.stderr.write(`${e?.stack}\n`);
    return 70;
  }
}

type CommandValues = Record<string, string | boolean | (string | boolean)[] | undefined>;
