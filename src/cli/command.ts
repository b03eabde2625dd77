/** The shape every CLI command module exports. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  multiple?: boolean;
}

export interface CommandContext {
  positionals: string[];
  /** How many of `positionals` are required, when the last ones are optional (default: all). */
  requiredPositionals?: number;
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
}

export interface Command {
  name: string;
  usage: string;
  /** Example command lines, one a line, as `--help` prints them (blank lines at either end are ignored). */
  examples: string;
  options: Record<string, OptionSpec>;
  /** Names of the required positional arguments, in order. */
  positionals: string[];
  /** How many of `positionals` are required, when the last ones are optional (default: all). */
  requiredPositionals?: number;
  /** Exit status for a VhdxError thrown by `run` (default 1; usage errors always exit 2). */
  errorStatus?: number;
  /** Resolves to the exit status (0 when nothing is returned); failures throw a VhdxError. */
  run(context: CommandContext): Promise<number | void>;
}
