"""``tuneport eval SPEC_OR_FILE --endpoint A --endpoint B`` and ``tuneport eval record ENDPOINT DATASET``.

The logic lives in :mod:`tuneport.evaluation.runner`; this module parses options and renders the run.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

__all__ = ["eval_"]

_EPILOG = """\b
Examples:
  tuneport eval heldout.jsonl --endpoint base --endpoint my-ft
  tuneport eval heldout.jsonl -e openai:gpt-4.1-mini -e http://127.0.0.1:8000/v1#tiny-chat --hourly 2.10
  tuneport eval eval.yaml --json > run.json
  tuneport eval --resume evalrun-0123456789abcdef
  tuneport eval record ft:gpt-4.1-mini-2025-04-14:acme::abc heldout.jsonl --name old-ft
  tuneport eval heldout.jsonl -e recorded:old-ft -e local-ft
  tuneport eval heldout.jsonl -e base -e my-ft --judge openai:gpt-4.1

\b
An eval spec (YAML) can give each endpoint its own system prompt:
  dataset: heldout.jsonl
  endpoints:
    - base
    - {name: ft, endpoint: my-ft, system: "Answer with JSON."}
  params: {temperature: 0, max_tokens: 256}
  graders: [json_valid, {name: json_match, fields: [category]}]
  # a pairwise LLM judge: asks JUDGE which answer is better, in both orders
  #   graders: [..., {name: pairwise_judge, judge: openai:gpt-4.1}]

\b
Prompted baselines, overfitting, non-inferiority:
  tuneport eval heldout.jsonl -e base --system @sys.txt --few-shot 3 -e my-ft --train-file train.jsonl
  tuneport eval heldout.jsonl -e base -e my-ft --train-file train.jsonl --train-sample 100
  tuneport eval heldout.jsonl -e openai-ft -e local-ft --baseline openai-ft --margin 0.05
  tuneport eval compare RUN_A RUN_B
(--system and --few-shot apply to the -e they follow.)

Exit status: 0 when every endpoint answered every item and every gate passed; 1 when the run is incomplete
(resumable); 14 when a gate failed (not shown non-inferior to --baseline by --margin, or under --fail-under).
"""


class _EvalGroup(click.Group):
    """``tuneport eval FILE ...`` runs an evaluation; ``tuneport eval record ...`` records. Anything that is not
    a subcommand name is handed to the hidden ``run`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `tuneport eval --help` shows the evaluation's own options (the common case), which mention `record`.
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


_PER_ENDPOINT = {"--system": "system", "--few-shot": "few_shot"}


class _RunCommand(click.Command):
    """``--system`` and ``--few-shot`` apply to the ``-e`` they follow: the tokens are read once, in order, to
    learn which endpoint each belongs to (click itself keeps each option's values, but not their interleaving)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {o for p in self.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts}
        per: list[dict[str, str]] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                break
            name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
            if token.startswith("-e") and len(token) > 2 and not token.startswith("--"):
                name, eq, inline = "-e", "=", token[2:]
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
            if name in ("-e", "--endpoint"):
                per.append({})
            elif name in _PER_ENDPOINT:
                if not per:
                    raise click.UsageError(f"{name} applies to the -e ENDPOINT it follows: put it after one")
                key = _PER_ENDPOINT[name]
                if key in per[-1]:
                    raise click.UsageError(f"{name} is given twice for the same -e ENDPOINT")
                per[-1][key] = value or ""
            i += 1 if eq or name not in takes_value else 2
        ctx.meta["tuneport.eval.per_endpoint"] = per
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        parent = ctx.parent.command_path if ctx.parent else "tuneport eval"
        formatter.write_usage(parent, "[OPTIONS] SPEC_OR_FILE -e ENDPOINT ...")
        formatter.write_usage(parent, "record ENDPOINT DATASET --name NAME")


@click.group(cls=_EvalGroup)
def eval_() -> None:
    """Evaluate endpoints on a held-out chat JSONL (or an eval spec) with paired statistics, latency and cost."""


def _parse_hourly(values: tuple[str, ...]) -> dict[str, Decimal] | Decimal | None:
    from tuneport.evaluation.spec import parse_hourly

    if not values:
        return None
    per: dict[str, Decimal] = {}
    default: Decimal | None = None
    for value in values:
        if "=" in value:
            name, _, rate = value.rpartition("=")
            per[name] = parse_hourly(rate)
        else:
            default = parse_hourly(value)
    if not per:
        return default
    if default is not None:
        raise click.UsageError(
            "--hourly: give either one RATE for every self-hosted endpoint or NAME=RATE pairs"
        )
    return per


@eval_.command("run", cls=_RunCommand, hidden=True, epilog=_EPILOG)
@click.argument("source", required=False, metavar="SPEC_OR_FILE")
@click.option(
    "--endpoint",
    "-e",
    "endpoints",
    multiple=True,
    metavar="ENDPOINT",
    help="An endpoint to evaluate (repeat): a saved name, openai:MODEL, URL#MODEL or recorded:NAME.",
)
@click.option(
    "-j",
    "--concurrency",
    type=click.IntRange(1, 4096),
    default=None,
    help="Requests in flight at once (default 8, or the spec's).",
)
@click.option(
    "--grader",
    "-g",
    "graders",
    multiple=True,
    metavar="GRADER",
    help='A grader (repeat): a name, or a JSON config like \'{"name": "json_match", "fields": ["a"]}\'. '
    "Default: chosen from the data.",
)
@click.option(
    "--judge",
    "judges",
    multiple=True,
    metavar="ENDPOINT",
    help="Add a pairwise LLM judge (repeat for several): ENDPOINT (a saved name, openai:MODEL or URL#MODEL) is "
    "asked which of two endpoints' answers is better, in both orders; a win counts only when both agree.",
)
@click.option(
    "--system",
    "systems",
    multiple=True,
    metavar="TEXT|@FILE",
    help="A system prompt for the -e ENDPOINT it follows (replaces the dataset's); @FILE reads it from a file.",
)
@click.option(
    "--few-shot",
    "few_shots",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="K",
    help="K examples drawn (seeded) from the training file for the -e ENDPOINT it follows, never eval items.",
)
@click.option(
    "--train-sample",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Also score N training items per endpoint: training vs held-out scores, the gap and an overfitting flag.",
)
@click.option(
    "--sample-seed", type=int, default=None, help="Seed of the few-shot draw and the training sample (default 0)."
)
@click.option(
    "--baseline",
    default=None,
    metavar="ENDPOINT",
    help="Test every other endpoint non-inferior to this one (by its row name); needs --margin.",
)
@click.option(
    "--margin",
    type=float,
    default=None,
    metavar="M",
    help="Non-inferiority margin in (0, 1): the candidate may be at most M worse (0.05 = 5 points). "
    "Not shown non-inferior -> exit 14.",
)
@click.option(
    "--fail-under",
    "fail_under",
    multiple=True,
    metavar="[NAME=]SCORE",
    help="Exit 14 when an endpoint's pass rate (or mean score) on any grader is under SCORE: every endpoint "
    "but the --baseline, or NAME=SCORE for one (repeat).",
)
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default 0).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Longest answer, in tokens.")
@click.option("--seed", type=int, default=None, help="Sampling seed, where the server supports one.")
@click.option(
    "--train",
    "--train-file",
    "train",
    type=click.Path(dir_okay=False),
    default=None,
    help="Training data: eval items are checked against it (leakage), and --few-shot / --train-sample draw from it "
    "(default: the spec's `train`).",
)
@click.option(
    "--hourly",
    multiple=True,
    metavar="[NAME=]USD",
    help="$/hour of self-hosted endpoints, for cost per 1,000 items (one rate, or NAME=RATE each).",
)
@click.option("--no-cache", is_flag=True, help="Ask every endpoint again instead of reusing stored answers.")
@click.option("--resume", "resume", default=None, metavar="RUN_ID", help="Continue an incomplete run.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds one request may take (default 120).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=None,
    help="Retries of a failed request (default 4; waits honour the server's Retry-After).",
)
@click.option("--name", default=None, help="A name for the run.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the whole run as JSON (for scripts and reports)."
)
def run(
    source: str | None,
    endpoints: tuple[str, ...],
    concurrency: int | None,
    graders: tuple[str, ...],
    judges: tuple[str, ...],
    systems: tuple[str, ...],
    few_shots: tuple[int, ...],
    train_sample: int | None,
    sample_seed: int | None,
    baseline: str | None,
    margin: float | None,
    fail_under: tuple[str, ...],
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    train: str | None,
    hourly: tuple[str, ...],
    no_cache: bool,
    resume: str | None,
    timeout: float | None,
    retries: int | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Evaluate endpoints on SPEC_OR_FILE (an eval spec, or a held-out chat JSONL with --endpoint): quality with
    paired statistics, latency, tokens and cost per 1,000 items, for every pair of endpoints on the same items.

    The last assistant message of each line is the reference; the messages before it are the prompt. Answers
    are cached and written as they arrive: re-running continues an unfinished run and costs nothing for items
    already answered. `tuneport eval record ENDPOINT DATASET --name NAME` keeps an endpoint's answers for later
    comparison as recorded:NAME.
    """
    from tuneport.evaluation.runner import run_eval

    if source is None and resume is None:
        raise click.UsageError(
            "give an eval spec or a held-out JSONL (with --endpoint ...), or --resume RUN_ID"
        )
    if margin is not None:
        from tuneport.evaluation.margins import check_margin

        check_margin(margin)
    grader_configs = [_grader(g) for g in graders] or None
    params = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    progress = None if as_json or not sys.stderr.isatty() else _progress
    per = click.get_current_context().meta.get("tuneport.eval.per_endpoint") or []
    gates = _parse_fail_under(fail_under)
    result = run_eval(
        source, endpoints=_endpoint_configs(endpoints, per), graders=grader_configs, params=params, train=train,
        concurrency=concurrency, use_cache=not no_cache, resume=resume, hourly=_parse_hourly(hourly), name=name,
        timeout=timeout, retry=_retry(retries), progress=progress, judges=judges, train_sample=train_sample,
        sample_seed=sample_seed, baseline=baseline, margin=margin,
    )  # fmt: skip
    if progress is not None:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
    else:
        _render(result)
    if result["status"] != "complete":
        raise click.exceptions.Exit(1)
    _gate(result, gates)


def _endpoint_configs(endpoints: tuple[str, ...], per: list[dict[str, str]]) -> list[Any]:
    """The -e references, each with the --system / --few-shot that followed it (a prompted endpoint is named
    ``REF (prompted: system + K-shot)``)."""
    from tuneport.evaluation.prompting import prompted_label
    from tuneport.evaluation.spec import EndpointConfig

    out: list[Any] = []
    for i, ref in enumerate(endpoints):
        opts = per[i] if i < len(per) else {}
        if not opts:
            out.append(ref)
            continue
        system = opts.get("system")
        if system is not None and system.startswith("@"):
            path = Path(system[1:])
            try:
                system = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="--system") from None
        shots = int(opts["few_shot"]) if "few_shot" in opts else None
        name = prompted_label(ref, system is not None, shots)
        out.append(EndpointConfig(endpoint=ref, name=name, system=system, shots=shots))
    return out


def _parse_fail_under(values: tuple[str, ...]) -> list[tuple[str | None, float]]:
    gates: list[tuple[str | None, float]] = []
    for value in values:
        name, _, score = value.rpartition("=")
        try:
            threshold = float(score)
        except ValueError:
            raise click.BadParameter(f"{value!r}: SCORE must be a number in [0, 1]", param_hint="--fail-under") from None
        if not 0.0 <= threshold <= 1.0:
            raise click.BadParameter(f"{value!r}: SCORE must be in [0, 1]", param_hint="--fail-under")
        gates.append((name or None, threshold))
    return gates


def _gate(result: dict[str, Any], gates: list[tuple[str | None, float]]) -> None:
    """Raise QualityGateError (exit 14) when a non-inferiority test or a --fail-under threshold fails."""
    from tuneport.errors import QualityGateError
    from tuneport.evaluation.verdict import noninferiority_sentence

    failed = [noninferiority_sentence(t) for t in result.get("noninferiority") or [] if not t.get("non_inferior")]
    baseline = (result.get("baseline") or {}).get("endpoint")
    labels = [e["name"] for e in result["endpoints"]]
    for name, threshold in gates:
        if name is not None and name not in labels:
            raise click.BadParameter(f"{name!r} is not an evaluated endpoint ({', '.join(labels)})",
                                     param_hint="--fail-under")  # fmt: skip
        for label in [name] if name else [x for x in labels if x != baseline]:
            for gid, g in result["summary"][label]["graders"].items():
                score = g["accuracy"] if g.get("accuracy") is not None else g.get("mean_score")
                if score is None or score < threshold:
                    failed.append(f"{label} scores {'n/a' if score is None else f'{score:.3f}'} on {gid}, under "
                                  f"--fail-under {threshold:g}")  # fmt: skip
    if failed:
        raise QualityGateError(
            f"quality gate failed ({len(failed)}):\n  " + "\n  ".join(failed),
            hint="The run is stored; `tuneport report RUN_ID` shows the details. Exit status 14 = a gate failed.",
        )


def _retry(retries: int | None) -> Any:
    if retries is None:
        return None
    from tuneport.http import RetryPolicy

    return RetryPolicy(max_attempts=retries + 1)


def _grader(value: str) -> Any:
    value = value.strip()
    if value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--grader") from None
    return value


def _progress(label: str, done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        click.echo(f"\r{label}: {done}/{total}", nl=False, err=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _verdicts(run: dict[str, Any]) -> list[str]:
    """The sentences the summary opens with: each comparison, non-inferiority test and overfitting check."""
    from tuneport.evaluation.verdict import comparison_sentence, noninferiority_sentence, overfitting_sentence

    lines = [comparison_sentence(c) for c in run.get("comparisons") or []]
    lines += [noninferiority_sentence(t) for t in run.get("noninferiority") or [] if t.get("kind")]
    lines += [overfitting_sentence(g) for g in run.get("overfitting") or []]
    return lines


def _render(run: dict[str, Any]) -> None:
    for sentence in _verdicts(run):
        click.echo(sentence)
    if run.get("comparisons") or run.get("noninferiority") or run.get("overfitting"):
        click.echo("")
    click.echo(
        f"run {run['id']}  ({run['status']}, {run['dataset']['n_items']} items of {run['dataset']['path']})"
    )
    prompting = run.get("prompting") or {}
    if prompting.get("endpoints") or prompting.get("train_sample"):
        repeated = prompting.get("repeated_eval_items") or 0
        click.echo(f"drawn from {prompting.get('train')} with seed {prompting.get('seed')}"
                   + (f" ({repeated} training examples repeat eval items and were never used)" if repeated else ""))  # fmt: skip
    for note in run.get("notes") or []:
        click.echo(f"note: {note}")
    session = run.get("session") or {}
    for label in session.get("asked", {}) | session.get("cached", {}):
        asked = session.get("asked", {}).get(label, 0)
        cached = session.get("cached", {}).get(label, 0)
        click.echo(f"{label}: {asked} asked, {cached} from the cache/recording")
    for gid, counts in (session.get("judge") or {}).items():
        click.echo(f"judge {gid}: {counts['asked']} asked, {counts['cached']} from the cache")
    click.echo("")
    for ep in run["endpoints"]:
        s = run["summary"][ep["name"]]
        click.echo(f"{ep['name']}  [{ep['kind']}] {ep['model']}")
        for gid, g in s["graders"].items():
            if g["accuracy"] is not None:
                lo, hi = g["accuracy_ci"]
                score = f"accuracy {_pct(g['accuracy'])} (95% CI {_pct(lo)}-{_pct(hi)}, n={g['n_judged']})"
            else:
                score = "mean " + ("-" if g["mean_score"] is None else f"{g['mean_score']:.3f}")
            extra = f", {g['n_errors']} ungradable" if g["n_errors"] else ""
            if g.get("labels"):
                extra += f", macro F1 {g['labels']['macro']['f1']:.3f}"
            click.echo(f"  {gid:<14} {score}{extra}")
        lat = s["latency"]
        if lat:
            click.echo(f"  latency        p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms")
        t = s["tokens"]
        click.echo(f"  tokens         {t['prompt']} prompt + {t['completion']} completion")
        cost = s["cost"]
        if cost["per_1000"] is not None:
            click.echo(
                f"  cost           ${cost['per_1000']} per 1,000 items ({cost['inputs'].get('method')})"
            )
        else:
            click.echo(f"  cost           {cost['inputs'].get('note')}")
        if s["errors"]:
            click.echo(f"  errors         {s['errors']} items without an answer")
    if run["comparisons"]:
        click.echo("\ncomparisons (b - a):")
    for c in run["comparisons"]:
        line = f"  {c['b']} vs {c['a']} [{c['grader']}] n={c['n']}: mean diff {c['scores']['mean_diff']:+.3f}"
        boot = c["scores"]["bootstrap"]
        line += f" (95% CI {boot['low']:+.3f}..{boot['high']:+.3f})"
        if c["pass"]:
            line += f", McNemar p={c['pass']['mcnemar']['p_value']:.3g}"
            winner = c["pass"]["winner"]
        else:
            winner = c["scores"]["winner"]
        line += f" -> {'better: ' + c[winner] if winner else 'no significant difference'}"
        click.echo(line)
        for w in c["warnings"]:
            click.echo(f"    ! {w}")
    if run.get("pairwise"):
        click.echo("\npairwise judge (a win counts only when both orders agree):")
    for p in run.get("pairwise") or []:
        s = p["summary"]
        line = (f"  {p['b']} vs {p['a']} [{p['grader']}, judge {p['judge']['name']}] n={s['n']}: "
                f"{s['wins_b']} wins, {s['ties']} ties, {s['wins_a']} losses, sign test p={s['p_value']:.3g}")  # fmt: skip
        winner = p[s["winner"]] if s["winner"] else None
        line += f" -> {'better: ' + winner if winner else 'no significant difference'}"
        click.echo(line)
        extra = [f"{s['errors']} unparseable verdicts"] if s["errors"] else []
        if s["orders_disagree"]:
            extra.append(
                f"{s['orders_disagree']} ties where the verdict changed with the order (position bias)"
            )
        extra += [f"{n} items excluded ({why.replace('_', ' ')})" for why, n in p["excluded"].items() if n]
        if extra:
            click.echo(f"    ! {', '.join(extra)}")
    for w in run["warnings"]:
        click.echo(f"warning: {w}", err=True)


@eval_.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Compare two stored runs on the items they share (the drift check): each endpoint of RUN_B against the
    same-named one of RUN_A (or the only one of each), with the same paired statistics as a run."""
    from tuneport.evaluation.drift import compare_runs
    from tuneport.evaluation.verdict import comparison_sentence

    result = compare_runs(run_a, run_b)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
        return
    for c in result["comparisons"]:
        click.echo(comparison_sentence(c))
    click.echo(f"\n{result['common_items']} common items ({result['only_a']} only in {run_a}, "
               f"{result['only_b']} only in {run_b})")  # fmt: skip
    if not result["comparisons"]:
        click.echo("warning: no endpoint and grader pair could be compared on the common items", err=True)


@eval_.command("record", epilog=_EPILOG)
@click.argument("endpoint")
@click.argument("dataset", type=click.Path(dir_okay=False))
@click.option(
    "--name", default=None, help="Name of the recording (default: the endpoint); replay as recorded:NAME."
)
@click.option("-j", "--concurrency", type=click.IntRange(1, 4096), default=8, show_default=True)
@click.option("--system", default=None, help="A system prompt replacing the dataset's.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=None)
@click.option("--no-cache", is_flag=True, help="Ask again even for answers already stored.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option(
    "--retries", type=click.IntRange(0, 20), default=None, help="Retries of a failed request (default 4)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def record(
    endpoint: str,
    dataset: str,
    name: str | None,
    concurrency: int,
    system: str | None,
    temperature: float,
    max_tokens: int | None,
    seed: int | None,
    no_cache: bool,
    timeout: float | None,
    retries: int | None,
    as_json: bool,
) -> None:
    """Store ENDPOINT's answers to DATASET, so they can be compared later as recorded:NAME (e.g. a hosted
    fine-tuned model about to retire)."""
    from tuneport.evaluation.runner import record_endpoint

    result = record_endpoint(
        endpoint, dataset, name=name, params={"temperature": temperature, "max_tokens": max_tokens, "seed": seed},
        system=system, concurrency=concurrency, use_cache=not no_cache, timeout=timeout, retry=_retry(retries),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
    else:
        click.echo(
            f"recorded {result['recorded']} of {result['n_items']} answers as {result['use_as']} "
            f"(run {result['run_id']}, {result['status']})"
        )
        if result["errors"]:
            click.echo(f"warning: {result['errors']} requests failed; run the same command again to fill them in",
                       err=True)  # fmt: skip
    if result["status"] != "complete":
        raise click.exceptions.Exit(1)
