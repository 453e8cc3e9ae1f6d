"""The command line: parse options, build objects, call the runner, map the outcome to an exit code.

Exit codes: 0 the gate passed, 1 the gate failed (a threshold was breached), 2 the gate could not run.
torch is imported only by `gate check`, so `gate --help` and `gate schema` answer at once.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import click

import gate
from gate.config import CHECK_NAMES
from gate.tasks import TASK_CHOICES
from gate.errors import GateError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143      # 128 + SIGINT, 128 + SIGTERM, as shells report them


class Terminated(BaseException):
    """SIGTERM (a cancelled CI job, `docker stop`): a BaseException, so no library `except Exception` swallows it."""


_finishing = False      # set while the reports are written: a signal then waits for the run to end
_signalled: int | None = None   # the SIGINT / SIGTERM that ended the run, kept in case its exception is lost


def _on_sigterm(signum: int, frame: Any) -> None:
    global _signalled
    if not _finishing:
        _signalled = signum
        raise Terminated(signum)


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's own KeyboardInterrupt, remembered: raised inside a finaliser (a generator closed by the garbage
    collector, a __del__) it is printed as ignored and the run would go on to write its reports and exit 0."""
    global _signalled
    if not _finishing:
        _signalled = signum
        raise KeyboardInterrupt


def _raise_if_signalled() -> None:
    """Before any report is written: a signal whose exception something swallowed still ends the run."""
    if _signalled == signal.SIGINT:
        raise KeyboardInterrupt
    if _signalled is not None:
        raise Terminated(_signalled)


#: The options of `gate check` that name a file it writes. What an earlier run left there is removed before
#: anything can fail (a bad option, a bad config, a missing file), so CI never reads a stale verdict.
OUTPUT_OPTIONS = ("json_path", "markdown_path", "junit_path", "html_path", "state_path")


def option_flag(dest: str) -> str:
    """The option a parameter name stands for in messages: json_path -> --json, baseline_cache -> --baseline-cache."""
    return "--" + dest.removesuffix("_path").replace("_", "-")


def not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An empty value is always a mistake (an unset CI variable in `-c "$GATE_CONFIG"`), never "not given": one
    callback for every path and text option, so the gate never runs without the policy or report it was named."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v == "" for v in values):
        if isinstance(param, click.Option):
            name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        else:
            name = param.human_readable_name.rstrip(".")
        what = "value" if param.metavar in ("MOD:FN", "I/N") else "path"
        raise click.UsageError(f"{name}: an empty {what}")
    return value


#: The options (and the CANDIDATE argument) of `gate check` that name a file it reads: a report path that is one of
#: them is never removed, and the run refuses it.
INPUT_OPTIONS = ("baseline", "data", "config_path", "onnx")


class CheckCommand(click.Command):
    """`gate check` and `gate merge`: remove the reports their raw arguments name before click parses (and may
    refuse) them; never a file also named as an input (CANDIDATE / STATE..., INPUT_OPTIONS)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        remove_named_reports(self, ctx, args)
        return super().parse_args(ctx, args)


def remove_named_reports(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """The reports raw `args` name when read as `command`'s, removed (on rank 0 only); never a file also named as
    an input there (CANDIDATE / STATE..., INPUT_OPTIONS)."""
    if _other_rank():
        return
    from gate.report.write import remove_stale

    values = option_values(command, ctx, args)
    inputs = values.get("<positional>", []) + [v for d in INPUT_OPTIONS for v in values.get(d, [])]
    first: GateError | None = None
    for dest, path in named_outputs(command, ctx, args):
        if not any(same_file(path, other) for other in inputs):
            try:
                remove_stale(path, option=option_flag(dest))
            except GateError as err:    # the other stale reports still go; then the first error is the run's
                first = first or err
    if first is not None:
        raise first


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same inode when both exist, else the same resolved path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:         # realpath, unlike Path.resolve, does not raise on a link loop
        return os.path.realpath(a) == os.path.realpath(b)


def entry_path(path: str) -> str:
    """Where a report written to `path` goes: its folder resolved, its own name as given (a link there is replaced,
    not followed: gate.report.write)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(folder), name)


def _refuse_outputs_over_inputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """A report or state path that is one of the run's inputs would overwrite it: refused (it was not removed)."""
    for out_name, out in outputs.items():
        for in_name, given in inputs.items():
            if out and given and same_file(out, given):
                option = "--" + out_name.removesuffix("_path")
                what = in_name if in_name.isupper() or in_name.startswith("STATE") else \
                    "--" + in_name.removesuffix("_path").replace("_", "-")
                raise click.UsageError(f"{option} {out} is the file given as {what}: a report must not overwrite an "
                                       "input")


def output_paths(command: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """The paths OUTPUT_OPTIONS name in raw `args`, read as click reads them; none when help is asked for.

    >>> output_paths(check, click.Context(check), ["c.pt", "-vb", "--json", "b.pt", "--html=r.html"])
    ['r.html']
    """
    return [path for _, path in named_outputs(command, ctx, args)]


def named_outputs(command: click.Command, ctx: click.Context, args: list[str]) -> list[tuple[str, str]]:
    """(parameter name, path) for each path OUTPUT_OPTIONS name in raw `args`; none when help is asked for."""
    values = option_values(command, ctx, args)
    if "help" in values:
        return []
    return [(dest, v) for dest in OUTPUT_OPTIONS for v in values.get(dest, [])]


def option_values(command: click.Command, ctx: click.Context, args: list[str]) -> dict[str, list[str]]:
    """Raw `args` read as click reads them: each option's values by parameter name, the positional arguments under
    "<positional>", and "help" when help is asked for (then nothing after it is read)."""
    options: dict[str, tuple[bool, str | None]] = {}    # option string -> (takes a value, parameter name)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                options[name] = (not param.is_flag and not param.count, param.name)
    options.update({name: (False, "help") for name in ctx.help_option_names})
    found: dict[str, list[str]] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            found.setdefault("<positional>", []).extend(tokens)
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            takes, dest = options.get(name, (False, None))
            if dest == "help":
                return {"help": []}
            if takes and not eq:
                value = next(tokens, "")
            if dest and takes and value:
                found.setdefault(dest, []).append(value)
        elif token.startswith("-") and len(token) > 1:      # -v, -vq, -bPATH, -b PATH
            for i, char in enumerate(token[1:], start=2):
                takes, dest = options.get(f"-{char}", (False, None))
                if dest == "help":
                    return {"help": []}
                if takes:
                    value = token[i:] if i < len(token) else next(tokens, "")
                    if dest and value:
                        found.setdefault(dest, []).append(value)
                    break
        else:
            found.setdefault("<positional>", []).append(token)
    return found


class GateGroup(click.Group):
    """`gate`: a usage error before `check` is reached (`gate --bogus check ... --json r.json`) still removes the
    reports that check's arguments name, as CheckCommand would have; so does a misspelled subcommand (`gate chek
    ... --json r.json`, `gate mrege ...`), its arguments read as check's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError:
            if "check" in args:
                _remove_reports_named(ctx, args[args.index("check") + 1:])
            raise

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            _remove_reports_named(ctx, args[1:])
            raise


def _remove_reports_named(ctx: click.Context, rest: list[str]) -> None:
    """The reports `rest` names when read as `gate check`'s arguments, removed (CheckCommand's rule)."""
    remove_named_reports(check, click.Context(check, parent=ctx, info_name="check"), rest)


def _other_rank() -> bool:
    """A torchrun rank other than 0: rank 0 alone writes (and so removes) the reports."""
    import os

    return os.environ.get("WORLD_SIZE", "1") != "1" and os.environ.get("RANK", "0") != "0"


@click.group(cls=GateGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(gate.__version__, prog_name="gate")
def cli() -> None:
    """gate: fail the pipeline when a candidate PyTorch checkpoint regresses against the production baseline.

    \b
    Exit codes: 0 pass, 1 the gate failed (a threshold was breached), 2 the gate could not run.
    """


@cli.command(cls=CheckCommand)
@click.argument("candidate", metavar="CANDIDATE", callback=not_empty)
@click.option("--baseline", "-b", required=True, metavar="PATH", callback=not_empty,
              help="The production checkpoint to compare against.")
@click.option("--data", "-d", metavar="PATH", callback=not_empty,
              help="Evaluation data: .jsonl/.csv (text), .pt/.safetensors/.npz (tensors) or package.module:callable "
                   "(required unless data.factory is set in the config).")
@click.option("--config", "-c", "config_path", metavar="FILE", callback=not_empty,
              help="gate.yaml (or .json) with thresholds and options.")
@click.option("--model-factory", metavar="MOD:FN", callback=not_empty,
              help="Builds the module a state_dict is loaded into (package.module:callable).")
@click.option("--trust-checkpoint", "trust_checkpoint", multiple=True, type=click.Choice(["baseline", "candidate", "all"]),
              metavar="ROLE",
              help="Load this role's checkpoint even if it is a program (TorchScript, torch.export) or a pickle that "
                   "runs code: baseline, candidate or all (repeatable). Only for files you built yourself, never "
                   "for a pull request's candidate. A config file cannot give trust.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), help="Where both models run (default: cpu).")
@click.option("--batch-size", type=click.IntRange(min=1, max=2**20), help="Evaluation batch size (default 64; at most 2^20).")
@click.option("--limit", type=click.IntRange(min=1, max=2**53 - 1), help="Evaluate only the first N samples.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), help="Seed for everything random (default 0; at most 2^32 - 1).")
@click.option("--threads", type=click.IntRange(min=1, max=1024), help="torch intra-op threads (1 to 1024).")
@click.option("--decision", type=click.Choice(["significant-and-beyond", "non-inferiority", "point"]), help="How metric deltas are decided.")
@click.option("--task", type=click.Choice(TASK_CHOICES),
              help="What the models do: auto (read from the models), classification, multi_label or regression; "
                   "wins over the config's task (docs/tasks.md).")
@click.option("--enable", multiple=True, type=click.Choice(CHECK_NAMES), metavar="CHECK",
              help=f"Turn a check on (repeatable): {', '.join(CHECK_NAMES)}.")
@click.option("--disable", multiple=True, type=click.Choice(CHECK_NAMES), metavar="CHECK", help="Turn a check off (repeatable).")
@click.option("--onnx", metavar="PATH", callback=not_empty,
              help="Cross-check this ONNX file (the one you ship) against the candidate.")
@click.option("--shard", metavar="I/N", callback=not_empty,
              help="Score only shard I of N (every N-th batch from the I-th) and write its state to --state, "
                   "for `gate merge` (a CI matrix). Under torchrun the ranks shard by themselves.")
@click.option("--state", "state_path", metavar="PATH", callback=not_empty,
              help="Where --shard writes this shard's state file.")
@click.option("--baseline-cache", metavar="DIR", callback=not_empty,
              help="Keep the baseline's outputs here, keyed by everything that changes them; a rerun with the "
                   "same baseline and data skips the baseline's forward passes.")
@click.option("--json", "json_path", metavar="PATH", callback=not_empty, help="Write the JSON report here.")
@click.option("--markdown", "markdown_path", metavar="PATH", callback=not_empty, help="Write the Markdown report here.")
@click.option("--junit", "junit_path", metavar="PATH", callback=not_empty,
              help="Write a JUnit XML report here (one test case per check, and one per slice of the slices check).")
@click.option("--html", "html_path", metavar="PATH", callback=not_empty,
              help="Write a self-contained HTML report here (inline SVG charts, no script, nothing fetched).")
@click.option("--verbose", "-v", is_flag=True, help="Show every finding and table on the console.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict line.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def check(candidate: str, **opts: Any) -> None:
    """Compare CANDIDATE with --baseline on --data and decide pass or fail.

    \b
    Example:
      gate check candidate.pt --baseline prod.pt --data eval.jsonl --config gate.yaml --json report.json
    """
    from gate.api import OPTIONS, configure
    from gate.report.write import check_writable, remove_stale

    # The Python API does the work (gate.api.configure, gate.api.run): the CLI parses, writes and exits.
    config = configure(opts["config_path"], **{k: opts[k] for k in OPTIONS})
    data = opts["data"] or config.data.get("factory")
    if not data:
        raise click.UsageError("Missing option '--data' (or data.factory in the config).")
    outputs = {k: opts[k] for k in ("json_path", "markdown_path", "junit_path", "html_path") if opts[k]}
    targets = [entry_path(p) for p in outputs.values()]
    if len(set(targets)) != len(targets):
        raise click.UsageError("--json, --markdown, --junit and --html must name different files")
    _refuse_outputs_over_inputs({**outputs, "state_path": opts["state_path"]},
                                {"CANDIDATE": candidate, **{k: opts[k] for k in INPUT_OPTIONS}})
    from gate.sharding import distributed_shard

    ranked = distributed_shard()
    if opts["shard"] or opts["state_path"]:
        _check_shard_job(candidate, config, data, outputs, ranked=ranked, **opts)
        return
    rank = ranked.index if ranked is not None else 0
    if rank == 0:
        for dest, path in outputs.items():
            check_writable(path, option=option_flag(dest))
        for dest, path in outputs.items():
            remove_stale(path, option=option_flag(dest))

    from gate.api import run

    report = run(config, candidate, opts["baseline"], data, onnx=opts["onnx"],
                 progress="off" if opts["quiet"] or rank != 0 else "auto", distributed=ranked is not None,
                 baseline_cache=opts["baseline_cache"])
    if ranked is not None:
        _finish_rank(report, outputs, **opts)
    _write_reports(report, outputs)
    _echo_report(report, outputs, **opts)
    sys.exit(report.exit_code)


def _check_shard_job(candidate: str, config: Any, data_source: str, outputs: dict[str, str], *, ranked: Any,
                     **opts: Any) -> None:
    """`--shard I/N --state FILE`: score one shard, write its state (the verdict is `gate merge`'s), exit 0."""
    from gate.api import run
    from gate.sharding import parse_shard, write_state

    if not (opts["shard"] and opts["state_path"]):
        raise click.UsageError("--shard I/N and --state FILE go together")
    if ranked is not None:
        raise click.UsageError("--shard is for separate jobs; under torchrun the ranks shard by themselves")
    if outputs:
        raise click.UsageError("--shard writes a state file, not reports: `gate merge` writes the reports")
    shard = parse_shard(opts["shard"])
    state = run(config, candidate, opts["baseline"], data_source, onnx=opts["onnx"], shard=shard,
                progress="off" if opts["quiet"] else "auto", baseline_cache=opts["baseline_cache"])
    write_state(state, opts["state_path"])
    timed = "".join(f"; {name} timed after the pass, its timings kept" for name in state.measured)
    click.echo(f"shard {shard.label}: {state.meta['num_samples']} samples in {state.meta['num_batches']} batches"
               f"{timed}; state written to {opts['state_path']} (decide with: gate merge STATE...)")
    sys.exit(EXIT_PASS)


def _finish_rank(report: Any, outputs: dict[str, str], **opts: Any) -> None:
    """Under torchrun: rank 0 writes the reports and prints; every rank exits with rank 0's code."""
    from gate.sharding import broadcast_exit_code

    if report is None:
        sys.exit(broadcast_exit_code(EXIT_PASS))
    try:
        _write_reports(report, outputs)
        _echo_report(report, outputs, **opts)
    except BaseException:
        broadcast_exit_code(EXIT_ERROR)
        raise
    sys.exit(broadcast_exit_code(report.exit_code))


def _echo_report(report: Any, outputs: dict[str, str], **opts: Any) -> None:
    # A report written to stdout keeps stdout to itself: the console report goes to stderr then.
    to_stderr = any(str(p) == "/dev/stdout" for p in outputs.values())
    if opts["quiet"]:
        click.echo(f"verdict: {report.summary}", err=to_stderr)
    else:
        from gate.report.console import render_console      # (and tabulate) only when a table is printed

        click.echo(render_console(report, verbose=opts["verbose"]), nl=False, err=to_stderr)


@cli.command(cls=CheckCommand)
@click.argument("states", nargs=-1, required=True, metavar="STATE...", callback=not_empty)
@click.option("--config", "-c", "config_path", metavar="FILE", callback=not_empty,
              help="gate.yaml from a trusted source (the base branch): every state's policy must be this file's. "
                   "Without it the states' own config decides; give it whenever a state may come from a job the "
                   "change under test could influence (docs/security.md).")
@click.option("--json", "json_path", metavar="PATH", callback=not_empty, help="Write the JSON report here.")
@click.option("--markdown", "markdown_path", metavar="PATH", callback=not_empty, help="Write the Markdown report here.")
@click.option("--junit", "junit_path", metavar="PATH", callback=not_empty, help="Write a JUnit XML report here.")
@click.option("--html", "html_path", metavar="PATH", callback=not_empty, help="Write the HTML report here.")
@click.option("--verbose", "-v", is_flag=True, help="Show every finding and table on the console.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict line.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def merge(states: tuple[str, ...], **opts: Any) -> None:
    """Merge the state files of `gate check --shard I/N` jobs, decide, and write the reports.

    \b
    Example (a CI matrix of 2, then one last job):
      gate check cand.pt -b prod.pt -d eval.npz -c gate.yaml --shard 1/2 --state s1.gstate
      gate check cand.pt -b prod.pt -d eval.npz -c gate.yaml --shard 2/2 --state s2.gstate
      gate merge s1.gstate s2.gstate --config gate.yaml --json report.json
    """
    from gate.api import merge as merge_states
    from gate.report.write import check_writable, remove_stale

    outputs = {k: opts[k] for k in ("json_path", "markdown_path", "junit_path", "html_path") if opts[k]}
    _refuse_outputs_over_inputs(outputs, {**{f"STATE {s}": s for s in states}, "config_path": opts["config_path"]})
    for dest, path in outputs.items():
        check_writable(path, option=option_flag(dest))
    for dest, path in outputs.items():
        remove_stale(path, option=option_flag(dest))
    report = merge_states(states, config=opts["config_path"])
    _write_reports(report, outputs)
    _echo_report(report, outputs, **opts)
    sys.exit(report.exit_code)


def _write_reports(report: Any, outputs: dict[str, str]) -> None:
    """Render every report first, then write each atomically: an error leaves none half-written."""
    from gate.api import render
    from gate.report.write import write_reports

    global _finishing
    kinds = {"json_path": "json", "markdown_path": "markdown", "junit_path": "junit", "html_path": "html"}
    rendered = render(report, [kinds[key] for key in outputs])
    _raise_if_signalled()
    _finishing = True       # all or none: a SIGTERM now waits until every report is in place
    write_reports({outputs[key]: rendered[kinds[key]] for key in outputs},
                  options={outputs[key]: option_flag(key) for key in outputs})


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hook(args: tuple[str, ...]) -> None:
    """`gate check` for the pre-commit hook: arguments from the hook's `args`, after those in the file that
    GATE_HOOK_ARGS names (one per line), since `pre-commit try-repo` cannot pass any."""
    import os

    from gate.errors import ConfigError

    listed: list[str] = []
    source = os.environ.get("GATE_HOOK_ARGS")
    if source:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ConfigError(f"GATE_HOOK_ARGS={source}: file not found") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"GATE_HOOK_ARGS={source}: cannot read it: {err}") from err
        listed = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    cli.main(args=["check", *listed, *args], prog_name="gate", standalone_mode=False)


@cli.command()
@click.argument("which", type=click.Choice(["config", "report"]))
def schema(which: str) -> None:
    """Print the JSON Schema of gate.yaml (config) or of the JSON report (report)."""
    from gate.config import config_schema, report_schema

    click.echo(json.dumps(config_schema() if which == "config" else report_schema(), indent=2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure to run becomes one `error: ...` line on stderr and exit code 2.

    SIGINT and SIGTERM end the run with one `error:` line, no report, and 130 / 143. Without --debug, warnings
    from torch and other libraries stay off stderr (the report carries what matters); with it they show.
    """
    global _finishing, _signalled
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    _finishing, _signalled = False, None
    previous = _install_handlers()
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            _run(args, debug=debug)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_handlers() -> dict[int, Any]:
    """SIGTERM and SIGINT handlers for this run; the previous ones, to put back after it."""
    previous = {}
    try:
        for signum, handler in ((signal.SIGTERM, _on_sigterm), (signal.SIGINT, _on_sigint)):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:          # not the main thread (an embedding application): leave its handlers alone
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return {}
    return previous


def _run(args: list[str], *, debug: bool) -> None:
    try:
        try:
            cli.main(args=args, prog_name="gate", standalone_mode=False)
        except SystemExit:
            if not _finishing:          # a signal's exception lost on the way: the run still ends as signalled
                _raise_if_signalled()
            raise
        if not _finishing:
            _raise_if_signalled()
    except SystemExit:
        raise
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):     # click turns KeyboardInterrupt into Abort
        click.echo("error: interrupted (SIGINT); no report was written", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as err:
        click.echo(f"error: {_one_line(err.format_message())}", err=True)
        sys.exit(EXIT_ERROR)
    except GateError as err:
        if debug:
            raise
        click.echo(f"error: {_one_line(str(err))}", err=True)
        sys.exit(EXIT_ERROR)
    except Terminated:
        click.echo("error: terminated (SIGTERM); no report was written", err=True)
        sys.exit(EXIT_TERMINATED)
    except Exception as err:  # a bug in gate itself: still one line and exit 2, so CI can tell it from a regression
        if debug:
            raise
        click.echo(
            f"error: internal error: {type(err).__name__}: {_one_line(str(err))} (rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_PASS)


#: The longest error line printed: a message that quotes a huge value (a library's, say) is cut, not a CI log flood.
MAX_ERROR_CHARS = 4000


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > MAX_ERROR_CHARS:
        line = f"{line[:MAX_ERROR_CHARS]}... ({len(line)} characters in all)"
    return line


if __name__ == "__main__":
    main()
