"""``tuneport data split`` and ``tuneport data leakage``: parse options, call tuneport.data, render.

Only click is imported here; the library loads inside each command so ``tuneport --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_HITS_SHOWN = 10


class _ValAmount(click.ParamType):
    """``--val``: a fraction in (0, 1) or a whole count >= 1."""

    name = "FRACTION|COUNT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | int:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number: float = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not a number; give a fraction like 0.1 or a count like 500", param, ctx
                )
        if not number > 0 or number != number or number == float("inf"):
            self.fail(
                f"{value} must be a fraction between 0 and 1 (e.g. 0.1) or a count of at least 1", param, ctx
            )
        if number < 1:
            return number
        if number != int(number):
            self.fail(f"{value} is neither a fraction below 1 nor a whole count", param, ctx)
        return int(number)


def _echo_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _skipped_text(skipped: dict[str, int]) -> str:
    if not skipped:
        return "none"
    names = {"broken": "broken", "not_an_example": "not an example", "no_user_turns": "no user turn"}
    return ", ".join(f"{count:,} {names.get(reason, reason)}" for reason, count in sorted(skipped.items()))


@click.command("split")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--val",
    "val",
    type=_ValAmount(),
    default=0.1,
    show_default=True,
    help="Validation size: a fraction below 1 (0.1 = 10%) or a whole number of items.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Same file + same seed = byte-identical outputs."
)
@click.option(
    "--stratify",
    metavar="PATH",
    help="Keep each label's share on both sides: `label`, `metadata.label`, or `assistant_json.FIELD` "
    "(a field of the last assistant message parsed as JSON).",
)
@click.option(
    "--train-out", type=click.Path(path_type=Path), help="Default: <stem>.train.jsonl next to FILE."
)
@click.option("--val-out", type=click.Path(path_type=Path), help="Default: <stem>.val.jsonl next to FILE.")
@click.option("--force", is_flag=True, help="Overwrite output files that already exist.")
@click.option(
    "--no-group", is_flag=True, help="Allow items with the same user turns on both sides (not recommended)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def split_cmd(
    file: Path,
    val: float | int,
    seed: int,
    stratify: str | None,
    train_out: Path | None,
    val_out: Path | None,
    force: bool,
    no_group: bool,
    as_json: bool,
) -> None:
    """Split FILE into training and validation sets, deterministically.

    Items with the same user turns (exactly or after normalization) stay on one side, so the validation set never
    repeats a training prompt; the two outputs are re-checked for leakage afterwards. Lines are copied unchanged.
    """
    from tuneport.data.split import split_file

    result = split_file(
        file,
        val_fraction=val,
        seed=seed,
        stratify=stratify,
        train_out=train_out,
        val_out=val_out,
        force=force,
        group_duplicates=not no_group,
    )
    if as_json:
        _echo_json(result.to_dict())
        return
    share = result.val / result.total
    click.echo(f"split {result.input_path}: {result.total:,} items, seed {result.seed}")
    click.echo(f"  train  {result.train:>9,}  -> {result.train_path}")
    click.echo(f"  val    {result.val:>9,}  -> {result.val_path}  ({share:.1%})")
    if result.val != result.val_requested:
        click.echo(
            f"  note: {result.val_requested:,} validation items were asked for; groups of duplicates allowed "
            f"{result.val:,} without splitting a group"
        )
    if result.grouped and result.duplicate_groups:
        click.echo(
            f"  kept together: {result.duplicate_groups:,} groups of items with the same user turns "
            f"({result.duplicate_items:,} items)"
        )
    if result.stratify:
        click.echo(f"  stratified by {result.stratify}:")
        width = max([len(label) for label in result.labels] + [5])
        width = min(width, 40)
        click.echo(f"    {'label':<{width}}  {'total':>8}  {'train':>8}  {'val':>8}")
        rows = list(result.labels.items())
        for label, counts in rows[:20]:
            name = label if len(label) <= width else label[: width - 1] + "…"
            click.echo(
                f"    {name:<{width}}  {counts['total']:>8,}  {counts['train']:>8,}  {counts['val']:>8,}"
            )
        if len(rows) > 20:
            click.echo(f"    ... and {len(rows) - 20:,} more labels (--json lists all)")
        if result.missing_label:
            lines = ", ".join(str(n) for n in result.missing_label_lines[:5])
            click.echo(
                f"  {result.missing_label:,} items have no {result.stratify} (first: line {lines}); "
                "they form their own stratum, (missing)"
            )
    if result.leakage is not None:
        leak = result.leakage
        verdict = "none" if not leak.has_leak else f"{leak.exact:,} exact, {leak.normalized:,} normalized"
        click.echo(f"  leakage between train and val (same user turns): {verdict}")


@click.command("leakage")
@click.argument("train", type=click.Path(path_type=Path))
@click.argument("other", type=click.Path(path_type=Path))
@click.option(
    "--show", default=_HITS_SHOWN, show_default=True, type=click.IntRange(min=0), help="Hits to list."
)
@click.option("--fail-on-leak", is_flag=True, help="Exit with an error when any item of OTHER repeats TRAIN.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def leakage_cmd(train: Path, other: Path, show: int, fail_on_leak: bool, as_json: bool) -> None:
    """Find items of OTHER whose user turns repeat an item of TRAIN.

    Exact matches have the same user-turn texts; normalized matches are equal only after Unicode NFKC, casefolding,
    removing punctuation and collapsing whitespace. Line numbers are 1-based.
    """
    from tuneport.data.leakage import find_leakage
    from tuneport.errors import DataError

    report = find_leakage(train, other, max_hits=show)
    if fail_on_leak and report.has_leak:
        # Under --json the error object (with the hits as findings) is the only thing printed.
        if not as_json:
            _render_leakage(report)
        raise DataError(
            f"{other}: {report.leaked:,} of {report.candidate_items:,} items repeat user turns of {train} "
            f"({report.exact:,} exact, {report.normalized:,} after normalization)",
            hint=f"Remove those items from {other} (the line numbers are listed), or re-split with "
            "`tuneport data split`, which keeps duplicates on one side.",
            findings=[hit.to_dict() for hit in report.hits],
        )
    if as_json:
        _echo_json(report.to_dict())
    else:
        _render_leakage(report)


def _render_leakage(report: Any) -> None:
    click.echo(
        f"compared {report.candidate_path} ({report.candidate_items:,} items) "
        f"with {report.reference_path} ({report.reference_items:,} items)"
    )
    click.echo(f"  exact duplicates of user turns:     {report.exact:>9,}")
    click.echo(f"  normalized-only duplicates:         {report.normalized:>9,}")
    if report.reference_skipped or report.candidate_skipped:
        click.echo(
            f"  skipped lines: {report.reference_path}: {_skipped_text(report.reference_skipped)}; "
            f"{report.candidate_path}: {_skipped_text(report.candidate_skipped)}"
        )
    if report.hits:
        more = f" (first {len(report.hits)})" if report.hits_truncated else ""
        click.echo(f"  hits{more}:")
        for hit in report.hits:
            click.echo(
                f"    {report.candidate_path} line {hit.candidate_line}  =  "
                f"{report.reference_path} line {hit.reference_line}  ({hit.kind})"
            )
    elif not report.has_leak:
        click.echo("  no leakage")
