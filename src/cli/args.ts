// Command-line argument reading shared by the `inferjit` subcommands: flags and `--name value` /
// `--name=value` options are taken out of the list, so what remains are the positional arguments.

/** A mistake in how the command was called (exit code 2, usage shown). */
export class UsageError extends Error {}

export class ArgReader {
  readonly rest: string[];
  constructor(argv: readonly string[]) { this.rest = [...argv]; }

  /** True (and removed) when the flag is present. */
  flag(name: string): boolean {
    const i = this.rest.indexOf(name);
    if (i >= 0) this.rest.splice(i, 1);
    return i >= 0;
  }

  /** The option's value (removed with it), or undefined when absent. */
  option(name: string): string | undefined {
    const i = this.rest.findIndex((a) => a === name || a.startsWith(`${name}=`));
    if (i < 0) return undefined;
    const [a] = this.rest.splice(i, 1);
    if (a.includes('=')) return a.slice(name.length + 1);
    const v = this.rest.splice(i, 1)[0];
    if (v === undefined) throw new UsageError(`${name} needs a value`);
    return v;
  }
}
