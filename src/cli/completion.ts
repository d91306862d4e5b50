import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { UsageError } from "./exit.js";

interface Node {
  path: string;
  words: string[];
}

// Every command path with the words that may follow it: subcommands, then long options.
function walk(cmd: Command, prefix: string[], out: Node[]): void {
  const subs = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const options = cmd.options.map((o) => o.long).filter((o): o is string => Boolean(o));
  out.push({ path: prefix.join(" "), words: [...subs.map((c) => c.name()), ...options, "--help"] });
  for (const sub of subs) walk(sub, [...prefix, sub.name()], out);
}

/** A bash (or zsh, through bashcompinit) completion script for the program's commands and options. */
export function completionScript(program: Command, shell: string): string {
  if (shell !== "bash" && shell !== "zsh") throw new UsageError(`completion is for bash or zsh, got ${JSON.stringify(shell)}`);
  const nodes: Node[] = [];
  walk(program, [], nodes);
  const cases = nodes.map((n) => `    ${JSON.stringify(n.path)}) words=${JSON.stringify(n.words.join(" "))} ;;`).join("\n");
  const zsh = shell === "zsh" ? "autoload -U +X bashcompinit && bashcompinit\n" : "";
  return `# baton ${shell} completion: eval "$(baton completion ${shell})", or save it in your completions folder
${zsh}_baton_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" w i
  # The command path so far: the words before the cursor that are not options.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) ;; *) path="\${path:+$path }$w" ;; esac
  done
  local words=""
  case "$path" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _baton_complete baton
`;
}

/** Adds `baton completion bash|zsh`. */
export function addCompletionCommand(program: Command): void {
  program
    .command("completion")
    .argument("<shell>", "bash or zsh")
    .description(COMMANDS.completion)
    .action((shell: string) => {
      process.stdout.write(completionScript(program, shell));
    });
}
