/** The `vhdx` command line: dispatch, help, and the one-line error contract. */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeSummary } from '../node/native.js';
import { packageRoot } from '../node/package-root.js';
import { VhdxError } from '../format/errors.js';
import type { Command } from './command.js';
import { Interrupted } from './interrupt.js';
import { shownPath } from './output.js';

/** Commands load on demand: a run pays only for the one it uses. Each summary is kept here only (the main help lists them without loading any command). */
const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'create', summary: 'create a new empty image (dynamic by default, as Hyper-V)', load: async () => (await import('./commands/create.js')).create },
  { name: 'info', summary: 'describe an image: type, sizes, identifiers, log state', load: async () => (await import('./commands/info.js')).info },
  { name: 'map', summary: 'show where each range of the virtual disk lives', load: async () => (await import('./commands/map.js')).map },
  { name: 'read', summary: 'write bytes of the virtual disk to stdout', load: async () => (await import('./commands/read.js')).read },
  { name: 'write', summary: 'write bytes into the virtual disk (a repeated byte, or the contents of a file or stdin)', load: async () => (await import('./commands/write.js')).write },
  { name: 'convert', summary: 'convert between VHDX and raw (either way, or VHDX to VHDX with a new shape)', load: async () => (await import('./commands/convert.js')).convert },
  { name: 'check', summary: 'check an image for corruption and leaked space; --repair fixes what it safely can', load: async () => (await import('./commands/check.js')).check },
  { name: 'compact', summary: 'shrink an image file in place: unmap zero blocks, move blocks down, cut the end (Optimize-VHD)', load: async () => (await import('./commands/compact.js')).compact },
  { name: 'resize', summary: 'change the virtual size of an image in place (Resize-VHD); shrinking over data needs --shrink', load: async () => (await import('./commands/resize.js')).resize },
  { name: 'compare', summary: 'compare the virtual disks of two images (raw or VHDX); exit 0 equal, 1 different', load: async () => (await import('./commands/compare.js')).compare },
  { name: 'serve', summary: 'serve an image over NBD (Network Block Device) to qemu, nbd-client, libnbd tools and others', load: async () => (await import('./commands/serve.js')).serve },
  { name: 'commit', summary: 'merge a differencing image into its parent', load: async () => (await import('./commands/commit.js')).commit },
  { name: 'rebase', summary: 'point a differencing image at a new parent (moved, renamed or copied)', load: async () => (await import('./commands/rebase.js')).rebase },
  { name: 'upload', summary: 'upload an image to an Azure page blob as a fixed VHD (only the data travels; resumable)', load: async () => (await import('./commands/upload.js')).upload },
  { name: 'download', summary: 'download an Azure page blob holding a fixed VHD into a new VHDX (only its pages are fetched)', load: async () => (await import('./commands/download.js')).download },
  { name: 'web', summary: 'inspect an image in a web page (headers, log, allocation, check, sectors), served on 127.0.0.1 only', load: async () => (await import('./commands/web.js')).web },
  { name: 'demo', summary: 'create a sample image, write a pattern, flush, reopen, verify, and show info and map', load: async () => (await import('./commands/demo.js')).demo },
];

function version(): string {
  const root = packageRoot(import.meta.url);
  const pkg = JSON.parse(readFileSync(join(root ?? '.', 'package.json'), 'utf8')) as { version: string };
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

function commandHelp(c: Command, summary: string): string {
  // Boolean options also take a --no- form (parseArgs allowNegative); only progress documents it.
  const names = Object.entries(c.options).map(([name, o]) => {
    const long = name === 'progress' ? '--[no-]progress' : `--${name}${o.type === 'string' ? ' VALUE' : ''}`;
    return `  ${o.short ? `-${o.short}, ` : '    '}${long}`;
  });
  const width = Math.max(0, ...names.map((n) => n.length)) + 2;
  const opts = Object.values(c.options).map((o, i) => names[i]!.padEnd(width) + o.description);
  return [`usage: ${c.usage}`, '', summary, '', ...(opts.length ? ['options:', ...opts, ''] : []), 'examples:', ...c.examples.trim().split('\n').map((e) => `  ${e}`)].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const status = await run(argv);
  if (argv.includes('--debug')) {
    // Loaded only here: paths (and the file backend) are not needed to print help or a usage error.
    const { httpBackendsOpened } = await import('../node/paths.js');
    for (const b of httpBackendsOpened()) {
      const s = b.stats;
      process.stderr.write(`vhdx: http: ${b.name}: ${s.requests} requests, ${s.bytes} bytes received, ${s.retries} retries, ${s.hits} cache hits\n`);
    }
  }
  return status;
}

async function run(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  let fileForErrors: string | undefined;
  let errorStatus: number | undefined;
  try {
    if (args.length === 0 || args[0] === '--help' || args[0] === '-h' || args[0] === 'help') {
      process.stdout.write(mainHelp() + '\n');
      return args.length === 0 ? 2 : 0;
    }
    if (args[0] === '--version' || args[0] === '-V') {
      process.stdout.write(`vhdx ${version()} (${nativeSummary()})\n`);
      return 0;
    }
    const entry = COMMANDS.find((c) => c.name === args[0]);
    if (!entry) throw new VhdxError('INVALID_ARGUMENT', `unknown command ${JSON.stringify(args[0])} (see vhdx --help)`);
    const command = await entry.load();
    errorStatus = command.errorStatus;
    const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
    for (const [name, o] of Object.entries(command.options)) options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
    let parsed;
    try {
      parsed = parseArgs({ args: args.slice(1), options, allowPositionals: true, allowNegative: true, strict: true });
    } catch (error) {
      throw new VhdxError('INVALID_ARGUMENT', `${command.name}: ${parseError(error)} (see vhdx ${command.name} --help)`);
    }
    if (parsed.values.help) {
      process.stdout.write(commandHelp(command, entry.summary) + '\n');
      return 0;
    }
    if (parsed.positionals.length < (command.requiredPositionals ?? command.positionals.length)) {
      const missing = command.positionals.slice(parsed.positionals.length, command.requiredPositionals ?? command.positionals.length).join(' ');
      throw new VhdxError('INVALID_ARGUMENT', `${command.name}: missing ${missing} (usage: ${command.usage})`);
    }
    if (parsed.positionals.length > command.positionals.length) {
      const extra = parsed.positionals[command.positionals.length]!;
      throw new VhdxError('INVALID_ARGUMENT', `${command.name}: unexpected argument ${JSON.stringify(extra)} (usage: ${command.usage})`);
    }
    fileForErrors = parsed.positionals[0] === undefined ? undefined : shownPath(parsed.positionals[0]);
    return (await command.run({ positionals: parsed.positionals, values: parsed.values as CommandValues })) ?? 0;
  } catch (error) {
    if (error instanceof Interrupted) {
      process.stderr.write(`vhdx: ${error.file === undefined ? '' : `${error.file}: `}${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof VhdxError) {
      const file = error.file ?? (error.code === 'INVALID_ARGUMENT' ? undefined : fileForErrors);
      const where = error.offset === undefined ? '' : ` (at file offset ${error.offset})`;
      process.stderr.write(`vhdx: ${file === undefined ? '' : `${file}: `}${error.message}${where}\n`);
      if (debug) process.stderr.write(`${error.stack}\n`);
      return error.code === 'INVALID_ARGUMENT' ? 2 : (errorStatus ?? 1);
    }
    const e = error as NodeJS.ErrnoException;
    if (e?.code === 'EPIPE') return 0;
    process.stderr.write(`vhdx: internal error: ${e?.message ?? String(error)}${debug ? '' : ' (run with --debug for details)'}\n`);
    if (debug) process.stderr.write(`${e?.stack}\n`);
    return 70;
  }
}

/** parseArgs messages, first line only, in the style of the others (`unknown option --x`). */
function parseError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  const first = (e?.message ?? String(error)).split('\n')[0]!;
  const option = /'(-[^']*)'/.exec(first)?.[1];
  if (e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option ${option.split('=')[0]}`;
  if (e?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) {
    const name = option.replace(/ <value>$/, '');
    if (/argument missing/.test(first)) return `option ${name} needs a value`;
    if (/ambiguous/.test(first)) return `option ${name} needs a value (for one starting with a dash, write ${name.split(' ').pop()}=VALUE)`;
    if (/does not take an argument/.test(first)) return `option ${name} takes no value`;
  }
  return first.replace(/\.$/, '');
}

type CommandValues = Record<string, string | boolean | (string | boolean)[] | undefined>;
