"""The evaluation runner: ask every endpoint every held-out item, grade, and compare with paired statistics.

What a user relies on, and how it is kept:

- **One client.** Every request goes through :class:`tuneport.endpoints.client.InferenceClient` (bounded concurrency,
  retries honouring Retry-After, typed errors), so OpenAI, vLLM and any OpenAI-compatible server behave alike.
- **Nothing is asked twice.** Responses are cached in the store under a key of the endpoint (base URL + model),
  the sampling parameters and the exact messages: re-running an evaluation, or adding a grader, costs nothing.
  ``use_cache=False`` (``--no-cache``) asks again.
- **A crash loses nothing.** Responses are written as they arrive (batched into one transaction every few dozen,
  so the store never throttles the run); re-running the same evaluation, or ``--resume RUN_ID``, asks only for
  the items still missing.
- **Never a silently wrong score.** An endpoint that fails mid-run leaves its finished items in place, the failed
  ones marked with their error, and the run ``incomplete`` (resumable). Errored items are counted and left out of
  *both* sides of every paired comparison, so a model is never compared on easier items than its rival.
- **A judge that cannot be fooled by order.** A ``pairwise_judge`` grader names a judge endpoint (``--judge
  ENDPOINT``; in a spec ``{name: pairwise_judge, judge: NAME}``, resolved like ``--endpoint``). After both
  endpoints of a pair have answered an item, the judge is asked which answer is better in both orders, through
  the same client, bound, retries and cache; a win counts only when both orders agree. An answer with no
  verdict is a per-item error (never a tie); a judge that fails mid-run leaves the run incomplete (resumable).
- **Record and replay.** :func:`record_endpoint` stores an endpoint's answers under a name; ``recorded:NAME`` then
  works wherever an endpoint does, serving those answers by item (matched by the prompt, not the line), so a
  hosted fine-tuned model can be compared after it retires.

The result of :func:`run_eval` and :func:`load_run` is one plain dict (the contract with the report renderer);
``graders`` lists the graders that score each endpoint, pairwise judges are under ``pairwise``::

    {"id", "created_at", "status": "complete"|"incomplete", "dataset": {"path", "sha256", "n_items"},
     "endpoints": [{"name", "base_url", "model", "kind": "live"|"recorded", "job_id"}],
     "graders": [{"id", "name", "params"}], "params": {...sampling},
     "items": [{"index", "prompt", "reference", "results": {endpoint: {"output", "error", "latency_ms", "usage",
                "cached", "grades": {grader_id: GradeResult dict}}}}],
     "summary": {endpoint: {"graders": {grader_id: GradeSummary dict}, "latency": LatencySummary dict | None,
                 "tokens": {"prompt", "completion", "per_item"}, "cost": {"per_item", "per_1000", "currency",
                 "inputs"}, "errors": int}},
     "comparisons": [{"a", "b", "grader", "excluded", **PairedComparison.to_dict()}],
     "pairwise": [{"a", "b", "grader", "judge": {"name", "base_url", "model"},
                   "excluded": {"no_answer", "judge_failed"}, "summary": PairwiseSummary dict,
                   "items": [{"index", "winner": "a"|"b"|"tie"|None, "error": str|None, "excluded": bool,
                              "orders": [{"order": "a-b"|"b-a", "verdict", "raw"}], "details"}]}],
     "warnings": [str], "notes": [str], "leakage": LeakageReport dict | None}

Money is computed as :class:`~decimal.Decimal` and given as a decimal string (``None`` with ``inputs["note"]``
saying why when there is no price).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tuneport.errors import EvaluationError, ProviderError, TuneportError
from tuneport.evaluation.pricing import _cost

if TYPE_CHECKING:
    from tuneport.endpoints.client import ChatEndpoint
    from tuneport.evaluation.graders import Grader
    from tuneport.evaluation.spec import EndpointConfig, EvalItem, EvalSpec
    from tuneport.http import RetryPolicy
    from tuneport.jobs.store import Store

__all__ = [
    "run_eval",
    "load_run",
    "record_endpoint",
    "build_spec",
    "default_graders",
    "RECORDED_PREFIX",
]

#: ``recorded:NAME`` names a recording made with :func:`record_endpoint` (``tuneport eval record``).
RECORDED_PREFIX = "recorded:"
_RECORDING_RUN = "recording:"
#: Consecutive failed requests after which an endpoint is given up on for the rest of the run.
_BREAKER = 8
_FLUSH_ROWS = 256
_FLUSH_SECONDS = 0.5

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------------- the spec


def build_spec(
    source: str | Path | EvalSpec,
    *,
    endpoints: Sequence[str | EndpointConfig] = (),
    graders: Sequence[str | Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    train: str | Path | None = None,
    concurrency: int | None = None,
    name: str | None = None,
    judges: Sequence[str] = (),
) -> EvalSpec:
    """An :class:`~tuneport.evaluation.spec.EvalSpec` from a spec file, a held-out ``.jsonl`` (then ``endpoints`` are
    required) or a spec object, with command-line overrides applied (endpoints given here replace the spec's).

    Each of ``judges`` (``--judge ENDPOINT``) adds a pairwise judge grader asking that endpoint to the graders
    (the spec's, the ones given, or the defaults chosen from the data)."""
    from pydantic import ValidationError

    from tuneport.errors import SpecError
    from tuneport.evaluation.spec import EvalSpec, load_eval_spec

    if isinstance(source, EvalSpec):
        spec = source
    else:
        path = Path(source)
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            if not endpoints:
                raise EvaluationError(
                    f"{path}: no endpoints to evaluate",
                    hint="Name at least one: --endpoint base --endpoint my-ft (a saved name, openai:MODEL, "
                    "URL#MODEL or recorded:NAME).",
                )
            spec = EvalSpec(dataset=str(path), endpoints=list(endpoints))
        else:
            spec = load_eval_spec(path)
    changes: dict[str, Any] = {}
    if endpoints and not (
        isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".jsonl", ".ndjson")
    ):
        changes["endpoints"] = list(endpoints)
    if graders is not None:
        changes["graders"] = list(graders)
    if judges:
        current = list(changes.get("graders", spec.graders or []))
        taken = {(g.get("id") or g.get("name")) if isinstance(g, Mapping) else g for g in current}
        for ref in judges:
            gid = "pairwise_judge" if len(judges) == 1 else f"pairwise_judge:{ref}"
            while gid in taken:
                gid += "'"
            taken.add(gid)
            current.append({"name": "pairwise_judge", "id": gid, "judge": ref})
        changes["graders"] = current
    if params:
        changes["params"] = {**spec.params.model_dump(), **{k: v for k, v in params.items() if v is not None}}
    if train is not None:
        changes["train"] = str(train)
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if name is not None:
        changes["name"] = name
    if not changes:
        return spec
    try:
        return EvalSpec.model_validate({**spec.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise SpecError(f"invalid evaluation options: {problems}") from None


def default_graders(items: Sequence[EvalItem]) -> tuple[list[dict[str, Any]], str]:
    """Graders that fit the data when none are given, and why they were chosen.

    References that are all JSON objects get ``json_valid`` (is the output JSON at all?) and ``json_match``
    (field by field). Anything else is text: ``exact``, ``normalized`` (case, punctuation, spacing forgiven) and
    ``rouge_l`` (partial credit for overlap).
    """

    def is_object(text: str) -> bool:
        stripped = text.strip()
        if not stripped.startswith("{"):
            return False
        try:
            return isinstance(json.loads(stripped), dict) and bool(json.loads(stripped))
        except ValueError:
            return False

    if items and all(is_object(item.reference) for item in items):
        return (
            [{"name": "json_valid"}, {"name": "json_match"}],
            "every reference is a JSON object, so the graders are json_valid + json_match (field by field)",
        )
    return (
        [{"name": "exact"}, {"name": "normalized"}, {"name": "rouge_l"}],
        "the references are free text, so the graders are exact + normalized + rouge_l",
    )


#: Grader config keys the runner reads itself (a pairwise judge's endpoint and sampling), not the grader.
_RUNNER_KEYS = ("judge", "judge_params")


def _split_grader_config(config: str | Mapping[str, Any]) -> tuple[str | dict[str, Any], str | None, Any]:
    """(the config for :func:`~tuneport.evaluation.graders.make_grader`, the judge endpoint reference, the judge's sampling
    overrides): ``judge`` and ``judge_params`` name what the runner asks, so the grader never sees them."""
    if not isinstance(config, Mapping):
        return config, None, None
    rest = {k: v for k, v in config.items() if k not in _RUNNER_KEYS}
    return rest, config.get("judge"), config.get("judge_params")


def _make_graders(configs: Sequence[str | Mapping[str, Any]]) -> list[Grader]:
    """Build every grader; a pairwise judge grader must name its judge endpoint (``judge: NAME``)."""
    from tuneport.evaluation.graders import make_grader

    graders = []
    for config in configs:
        grader_config, judge, judge_params = _split_grader_config(config)
        g = make_grader(grader_config)
        if g.kind == "pairwise":
            if not isinstance(judge, str) or not judge.strip():
                raise EvaluationError(
                    f"grader {g.id!r} ({g.name}) compares two endpoints' answers with an LLM judge, but names no "
                    "judge endpoint"
                    + ("" if judge is None else f" (judge: {judge!r} is not an endpoint reference)"),
                    hint="Name one: --judge ENDPOINT, or in a spec {name: pairwise_judge, judge: NAME} (a saved "
                    "name, openai:MODEL or URL#MODEL).",
                )
        elif judge is not None or judge_params is not None:
            raise EvaluationError(
                f"grader {g.id!r} ({g.name}) grades one answer at a time and asks no judge: remove its "
                f"{'judge' if judge is not None else 'judge_params'!r}",
                hint="Only pairwise_judge uses a judge endpoint.",
            )
        graders.append(g)
    ids = [g.id for g in graders]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise EvaluationError(
            f"two graders share the id {dupes[0]!r}",
            hint='Give each an "id" (e.g. {name: json_match, id: priority, fields: [priority]}).',
        )
    return graders


# ------------------------------------------------------------------------------------------------- the targets


@dataclass
class _Target:
    """One endpoint under evaluation, resolved."""

    label: str
    reference: str
    kind: str  # "live" | "recorded"
    base_url: str
    model: str
    job_id: str | None
    system: str | None
    few_shot: list[dict[str, Any]] | None
    params: dict[str, Any]
    hourly: Decimal | None
    endpoint_kind: str  # the resolved endpoint's kind: openai / local / url / recorded
    chat: ChatEndpoint | None = None
    recording: str | None = None  # the recording's eval run id

    def messages(self, prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages this endpoint is sent: its own system prompt (replacing the item's), its few-shot
        prefix, then the item's prompt."""
        if self.system is None and not self.few_shot:
            return prompt
        head: list[dict[str, Any]] = []
        body = prompt
        if self.system is not None:
            head.append({"role": "system", "content": self.system})
            body = [m for m in prompt if m.get("role") != "system"]
        elif prompt and prompt[0].get("role") == "system":
            head.append(prompt[0])
            body = prompt[1:]
        return head + list(self.few_shot or []) + body

    def describe(self) -> dict[str, Any]:
        return {"name": self.label, "base_url": self.base_url, "model": self.model, "kind": self.kind,
                "job_id": self.job_id}  # fmt: skip

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this target (stored with the run)."""
        return {**self.describe(), "reference": self.reference, "system": self.system, "few_shot": self.few_shot,
                "params": self.params, "hourly_usd": None if self.hourly is None else str(self.hourly),
                "endpoint_kind": self.endpoint_kind, "recording": self.recording,
                "api_key_env": self.chat.api_key_env if self.chat else None}  # fmt: skip


def _resolve_targets(
    spec: EvalSpec, store: Store, hourly: Mapping[str, Decimal] | Decimal | None
) -> list[_Target]:
    from tuneport.endpoints.client import resolve_endpoint

    targets: list[_Target] = []
    for cfg in spec.endpoint_configs():
        params = {**spec.params.body(), **(cfg.params.body() if cfg.params else {})}
        rate = cfg.hourly_usd
        if rate is None and isinstance(hourly, Decimal):
            rate = hourly
        elif rate is None and isinstance(hourly, Mapping):
            rate = hourly.get(cfg.label)
        common = {"label": cfg.label, "reference": cfg.endpoint, "system": cfg.system, "few_shot": cfg.few_shot,
                  "params": params, "hourly": rate}  # fmt: skip
        if cfg.endpoint.startswith(RECORDED_PREFIX):
            name = cfg.endpoint[len(RECORDED_PREFIX) :].strip()
            run = _find_recording(store, name)
            meta = run.get("metadata") or {}
            targets.append(
                _Target(
                    kind="recorded",
                    base_url=meta.get("base_url", ""),
                    model=meta.get("model", ""),
                    job_id=cfg.job_id or meta.get("job_id"),
                    endpoint_kind=meta.get("endpoint_kind", "recorded"),
                    recording=run["id"],
                    **common,
                )  # fmt: skip
            )
            continue
        chat = resolve_endpoint(cfg.endpoint, store=store)
        targets.append(
            _Target(
                kind="live",
                base_url=chat.base_url,
                model=chat.model,
                job_id=cfg.job_id or chat.job_id,
                endpoint_kind=chat.kind,
                chat=chat,
                **common,
            )  # fmt: skip
        )
    labels = [t.label for t in targets]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise EvaluationError(
            f"the endpoint {dupes[0]!r} is named twice",
            hint="Give each endpoint its own name (in a spec: `name:`), e.g. to evaluate one model with two "
            "system prompts.",
        )
    return targets


def _find_recording(store: Store, name: str) -> dict[str, Any]:
    from tuneport.endpoints.client import EndpointError

    if not name:
        raise EndpointError(
            "recorded: names no recording.", hint="Use recorded:NAME (see `tuneport eval record`)."
        )
    for run in store.list_eval_runs():
        if (
            run.get("name") == _RECORDING_RUN + name
            and (run.get("metadata") or {}).get("kind") == "recording"
        ):
            return run
    raise EndpointError(
        f"No recording named {name!r}.",
        hint=f"Record one first: tuneport eval record ENDPOINT DATASET --name {name}",
    )


# -------------------------------------------------------------------------------------------------- the judges

#: Responses of a pairwise judge are stored in the run under ``judge:["GRADER_ID", "A", "B"]`` (the endpoint
#: column), ``sample`` 0 for the A-first order and 1 for the B-first order.
_JUDGE_PREFIX = "judge:"
#: A judge samples greedily unless its config says otherwise: the same question gets the same verdict, so the
#: response cache is meaningful and a re-run reproduces the comparison.
_JUDGE_DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.0}


@dataclass
class _Judge:
    """The endpoint a pairwise judge grader asks, resolved."""

    grader_id: str
    reference: str
    base_url: str
    model: str
    params: dict[str, Any]
    chat: ChatEndpoint

    def config(self) -> dict[str, Any]:
        """Everything needed to ask it again (stored with the run, so ``--resume`` asks the same judge)."""
        return {"reference": self.reference, "base_url": self.base_url, "model": self.model, "params": self.params,
                "api_key_env": self.chat.api_key_env, "endpoint_kind": self.chat.kind}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"name": self.reference, "base_url": self.base_url, "model": self.model}

    @property
    def label(self) -> str:
        return f"judge {self.reference}"


def _judge_label(grader_id: str, a: str, b: str) -> str:
    return _JUDGE_PREFIX + json.dumps([grader_id, a, b], ensure_ascii=False)


def _resolve_judges(configs: Sequence[str | Mapping[str, Any]], store: Store) -> dict[str, _Judge]:
    """The judge endpoint of every pairwise grader, resolved exactly like ``--endpoint`` (a saved name,
    ``openai:MODEL`` or ``URL#MODEL``); a recording cannot judge (it only has answers to the dataset's items)."""
    from pydantic import ValidationError

    from tuneport.endpoints.client import EndpointError, resolve_endpoint
    from tuneport.evaluation.spec import SamplingParams

    graders = _make_graders(configs)
    judges: dict[str, _Judge] = {}
    for g, config in zip(graders, configs, strict=True):
        if g.kind != "pairwise":
            continue
        _, ref, overrides = _split_grader_config(config)
        assert isinstance(ref, str)
        ref = ref.strip()
        if ref.startswith(RECORDED_PREFIX):
            raise EndpointError(
                f"grader {g.id!r}: the judge {ref!r} is a recording, which can only replay answers to the dataset",
                hint="Name a live judge endpoint: a saved name, openai:MODEL or URL#MODEL.",
            )
        if overrides is not None and not isinstance(overrides, Mapping):
            raise EvaluationError(f"grader {g.id!r}: judge_params must be a mapping, got {overrides!r}")
        try:
            sampling = SamplingParams(**{**_JUDGE_DEFAULT_PARAMS, **(overrides or {})})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'judge_params'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise EvaluationError(
                f"grader {g.id!r}: invalid judge_params ({problems})",
                hint="judge_params takes temperature, max_tokens, seed, stop and top_p.",
            ) from None
        chat = resolve_endpoint(ref, store=store)
        judges[g.id] = _Judge(g.id, ref, chat.base_url, chat.model, sampling.body(), chat)
    return judges


def _judges_from_config(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, _Judge]:
    from tuneport.endpoints.client import ChatEndpoint

    judges = {}
    for gid, c in configs.items():
        chat = ChatEndpoint(name=c["reference"], base_url=c["base_url"], model=c["model"],
                            api_key_env=c.get("api_key_env"), kind=c.get("endpoint_kind") or "url")  # fmt: skip
        judges[gid] = _Judge(
            gid, c["reference"], c["base_url"], c["model"], dict(c.get("params") or {}), chat
        )
    return judges


def _cache_key(target: _Target | _Judge, messages: list[dict[str, Any]]) -> str:
    """The response cache key: the endpoint (base URL + model), the sampling parameters and the exact messages.
    Endpoints under evaluation and judges share the key space: the same request has the same answer."""
    blob = orjson.dumps(
        {"base_url": target.base_url, "model": target.model, "params": target.params, "messages": messages},
        option=orjson.OPT_SORT_KEYS,
    )
    return "chat:" + hashlib.sha256(blob).hexdigest()


def _run_fingerprint(dataset_sha: str, targets: Sequence[_Target], kind: str) -> str:
    blob = orjson.dumps(
        {"kind": kind, "dataset": dataset_sha,
         "endpoints": [{k: v for k, v in t.config().items() if k not in ("hourly_usd", "api_key_env")}
                       for t in targets]},
        option=orjson.OPT_SORT_KEYS,
    )  # fmt: skip
    return hashlib.sha256(blob).hexdigest()


# -------------------------------------------------------------------------------------------- writing responses


class _ResponseWriter:
    """Buffers response rows and writes them in one transaction every ``_FLUSH_ROWS`` rows or
    ``_FLUSH_SECONDS`` seconds: a store write per response would cap a fast endpoint at a few hundred
    responses a second, and a crash still loses at most the last half second."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(
        self,
        target: str,
        index: int,
        cache_key: str | None,
        request: Any,
        response: Any,
        latency_ms: float | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        error: Any,
        sample: int = 0,
    ) -> None:
        self.rows.append({"eval_run_id": self.run_id, "endpoint": target, "item_index": index, "sample": sample,
                          "cache_key": cache_key, "request": request, "response": response,
                          "latency_ms": latency_ms, "prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens, "error": error})  # fmt: skip
        if len(self.rows) >= _FLUSH_ROWS or time.monotonic() - self.last >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        self.store.add_responses(rows)


def _response_text(response: Any) -> tuple[str | None, str | None]:
    """(text, finish_reason) of a stored response: ours ({"text": ...}) or a raw chat completion."""
    if not isinstance(response, dict):
        return None, None
    if "text" in response:
        return response.get("text"), response.get("finish_reason")
    try:
        choice = response["choices"][0]
        message = choice.get("message") or {}
        return message.get("content") or message.get("refusal") or "", choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None, None


# ------------------------------------------------------------------------------------------------ asking models


@dataclass
class _Timing:
    wall_s: float = 0.0
    requests: int = 0


@dataclass
class _Collected:
    timing: dict[str, _Timing] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ProviderError):
        return {"type": type(exc).__name__, "message": exc.message, "status_code": exc.status_code,
                "code": exc.code}  # fmt: skip
    if isinstance(exc, TuneportError):
        return {"type": type(exc).__name__, "message": exc.message}
    return {"type": type(exc).__name__, "message": str(exc)}


def _collect(
    store: Store,
    run_id: str,
    targets: Sequence[_Target],
    items: Sequence[EvalItem],
    *,
    concurrency: int,
    use_cache: bool,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> _Collected:
    """Fill in every (endpoint, item) response the run does not have yet: from the recording, the cache, or by
    asking. Endpoints are asked one after another, each at ``concurrency``, so each one's wall time (the basis of
    self-hosted cost) and latency are its own."""
    done: dict[str, set[int]] = {t.label: set() for t in targets}
    for row in store.list_responses(run_id):
        if row["error"] is None and row["endpoint"] in done:
            done[row["endpoint"]].add(row["item_index"])
    out = _Collected()
    writer = _ResponseWriter(store, run_id)
    try:
        for target in targets:
            missing = [item for item in items if item.index not in done[target.label]]
            if not missing:
                continue
            if target.kind == "recorded":
                _replay(store, writer, target, missing)
                out.cached[target.label] = len(missing)
                continue
            to_ask: list[tuple[EvalItem, list[dict[str, Any]], str]] = []
            hits = 0
            for item in missing:
                messages = target.messages(item.prompt)
                key = _cache_key(target, messages)
                cached = store.find_cached_response(key) if use_cache else None
                if cached is not None:
                    text, finish = _response_text(cached["response"])
                    if text is not None:
                        hits += 1
                        writer.add(target.label, item.index, key,
                                   {"item_key": item.key, "params": target.params},
                                   {"text": text, "finish_reason": finish,
                                    "model": (cached["response"] or {}).get("model"),
                                    "cached_from": cached["eval_run_id"]},
                                   cached["latency_ms"], cached["prompt_tokens"], cached["completion_tokens"],
                                   None)  # fmt: skip
                        continue
                to_ask.append((item, messages, key))
            out.cached[target.label] = hits
            writer.flush()
            if not to_ask:
                continue
            _check_key(target)
            started = time.perf_counter()
            _run_async(lambda t=target, w=to_ask: _ask(t, w, writer, concurrency, retry, timeout, progress))
            writer.flush()
            out.timing[target.label] = _Timing(time.perf_counter() - started, len(to_ask))
            out.asked[target.label] = len(to_ask)
    finally:
        writer.flush()
    return out


def _check_key(target: _Target) -> None:
    """A missing API key stops the run before the first request (not after a run of identical failures)."""
    import os

    env = target.chat.api_key_env if target.chat else None
    if env and not os.environ.get(env, "").strip():
        from tuneport.errors import AuthenticationError

        raise AuthenticationError(
            f"Endpoint {target.label!r} needs an API key in the environment variable {env}, which is not set.",
            hint=f"export {env}=... and run the same command again: answers already received are kept.",
        )


def _run_async(make: Callable[[], Any]) -> Any:
    """Run a coroutine to completion; from inside a running event loop (a notebook), in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _ask(
    target: _Target,
    work: list[tuple[EvalItem, list[dict[str, Any]], str]],
    writer: _ResponseWriter,
    concurrency: int,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> None:
    from tuneport.endpoints.client import InferenceClient

    assert target.chat is not None
    queue = list(reversed(work))
    total = len(work)
    state = {"done": 0, "fails": 0, "last": None, "broken": False}
    params = target.params
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}

    async def worker(client: InferenceClient) -> None:
        while queue and not state["broken"]:
            item, messages, key = queue.pop()
            request = {"item_key": item.key, "params": params}  # messages: rebuilt from the item + config
            try:
                result = await client.chat(target.chat, messages, **kwargs, **params)
            except TuneportError as exc:
                state["fails"] += 1
                state["last"] = exc
                writer.add(target.label, item.index, key, request, None, None, None, None, _error_dict(exc))
                if state["fails"] >= _BREAKER:
                    state["broken"] = True
            else:
                state["fails"] = 0
                usage = result.usage
                writer.add(target.label, item.index, key, request,
                           {"text": result.text, "finish_reason": result.finish_reason, "model": result.model},
                           round(result.latency_ms, 3), usage.prompt_tokens, usage.completion_tokens,
                           None)  # fmt: skip
            state["done"] += 1
            if progress is not None:
                progress(target.label, state["done"], total)

    async with InferenceClient(concurrency=concurrency, retry=retry) as client:
        await asyncio.gather(*(worker(client) for _ in range(min(concurrency, total))))
    if state["broken"]:
        last = state["last"]
        reason = last.message if isinstance(last, TuneportError) else str(last)
        for item, _messages, key in queue:
            writer.add(target.label, item.index, key, {"item_key": item.key, "params": params},
                       None, None, None, None,
                       {"type": "NotAsked", "message": f"not asked: {target.label} failed {_BREAKER} requests in a "
                        f"row (last error: {reason})"})  # fmt: skip


def _replay(store: Store, writer: _ResponseWriter, target: _Target, items: Sequence[EvalItem]) -> None:
    """Serve a recorded endpoint's answers by item (matched by the prompt's key)."""
    assert target.recording is not None
    by_key: dict[str, dict[str, Any]] = {}
    for row in store.list_responses(target.recording):
        key = (row.get("request") or {}).get("item_key")
        if key and row["error"] is None:
            by_key[key] = row
    name = target.reference[len(RECORDED_PREFIX) :]
    for item in items:
        row = by_key.get(item.key)
        request = {"item_key": item.key, "recording": target.recording}
        if row is None:
            writer.add(target.label, item.index, None, request, None, None, None, None,
                       {"type": "NotRecorded",
                        "message": f"the recording {name!r} has no answer for this item (dataset line "
                                   f"{item.lineno}): it was recorded on other items, or that request failed"})  # fmt: skip
            continue
        text, finish = _response_text(row["response"])
        writer.add(target.label, item.index, None, request,
                   {"text": text, "finish_reason": finish, "model": (row["response"] or {}).get("model"),
                    "cached_from": target.recording},
                   row["latency_ms"], row["prompt_tokens"], row["completion_tokens"], None)  # fmt: skip


# ------------------------------------------------------------------------------------------------ the judge


@dataclass
class _JudgeCall:
    """One judge request: a pair's item in one order (``sample`` 0: A shown first, 1: B shown first)."""

    label: str
    index: int
    sample: int
    key: str
    messages: list[dict[str, Any]]
    request: dict[str, Any]


def _outputs(store: Store, run_id: str, labels: Sequence[str]) -> dict[str, dict[int, str]]:
    """Every endpoint's answered outputs in this run, by item index (errored and textless answers left out)."""
    out: dict[str, dict[int, str]] = {label: {} for label in labels}
    for r in store.list_responses(run_id):
        if r["endpoint"] in out and r["sample"] == 0 and r["error"] is None:
            text, _ = _response_text(r["response"])
            if text is not None:
                out[r["endpoint"]][r["item_index"]] = text
    return out


def _judge_rows(store: Store, run_id: str) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {
        (r["endpoint"], r["item_index"], r["sample"]): r
        for r in store.list_responses(run_id)
        if str(r["endpoint"]).startswith(_JUDGE_PREFIX)
    }


def _judge_messages(grader: Any, item: EvalItem, first: str, second: str) -> list[dict[str, Any]]:
    return grader.build_messages(first, second, item={"messages": item.prompt}, reference=item.reference)


def _judge_pairs(
    store: Store,
    run_id: str,
    labels: Sequence[str],
    items: Sequence[EvalItem],
    graders: Sequence[Grader],
    judges: Mapping[str, _Judge],
    *,
    concurrency: int,
    use_cache: bool,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> dict[str, dict[str, int]]:
    """Ask every pairwise judge about every pair of endpoints on every item both answered, in both orders.

    Only what the run does not have yet is asked: a stored verdict for the same messages is kept, the cache
    (any run) is used next, and the rest goes to the judge endpoint through the same client, concurrency bound
    and retries as the endpoints themselves. Returns ``{grader_id: {"asked", "cached"}}``.
    """
    pairwise = [g for g in graders if g.kind == "pairwise"]
    if not pairwise or len(labels) < 2:
        return {}
    outputs = _outputs(store, run_id, labels)
    have = _judge_rows(store, run_id)
    stats: dict[str, dict[str, int]] = {}
    writer = _ResponseWriter(store, run_id)
    try:
        for g in pairwise:
            judge = judges[g.id]
            to_ask: list[_JudgeCall] = []
            hits = 0
            for i, a in enumerate(labels):
                for b in labels[i + 1 :]:
                    label = _judge_label(g.id, a, b)
                    for item in items:
                        out_a, out_b = outputs[a].get(item.index), outputs[b].get(item.index)
                        if out_a is None or out_b is None or out_a == out_b:
                            continue  # excluded, or a tie the grader decides without asking
                        orders = (
                            _judge_messages(g, item, out_a, out_b),
                            _judge_messages(g, item, out_b, out_a),
                        )
                        for sample, messages in enumerate(orders):
                            key = _cache_key(judge, messages)
                            row = have.get((label, item.index, sample))
                            if row is not None and row["error"] is None and row["cache_key"] == key:
                                continue
                            request = {"judge": g.id, "a": a, "b": b, "order": ("a-b", "b-a")[sample],
                                       "item_key": item.key, "params": judge.params}  # fmt: skip
                            cached = store.find_cached_response(key) if use_cache else None
                            text = _response_text(cached["response"])[0] if cached is not None else None
                            if cached is not None and text is not None:
                                hits += 1
                                writer.add(label, item.index, key, request,
                                           {"text": text, "finish_reason": _response_text(cached["response"])[1],
                                            "model": (cached["response"] or {}).get("model"),
                                            "cached_from": cached["eval_run_id"]},
                                           cached["latency_ms"], cached["prompt_tokens"],
                                           cached["completion_tokens"], None, sample=sample)  # fmt: skip
                                continue
                            to_ask.append(_JudgeCall(label, item.index, sample, key, messages, request))
            writer.flush()
            stats[g.id] = {"asked": len(to_ask), "cached": hits}
            if to_ask:
                _check_key(judge)
                _run_async(
                    lambda j=judge, w=to_ask: _ask_judge(j, w, writer, concurrency, retry, timeout, progress)
                )
                writer.flush()
    finally:
        writer.flush()
    return stats


async def _ask_judge(
    judge: _Judge,
    work: list[_JudgeCall],
    writer: _ResponseWriter,
    concurrency: int,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> None:
    """Ask the judge ``work``; like :func:`_ask`, a judge that fails ``_BREAKER`` requests in a row is given up on
    and the rest is marked not asked (the run is then incomplete, and re-running asks only those)."""
    from tuneport.endpoints.client import InferenceClient

    queue = list(reversed(work))
    total = len(work)
    state: dict[str, Any] = {"done": 0, "fails": 0, "last": None, "broken": False}
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    name = f"judge {judge.grader_id}"

    async def worker(client: InferenceClient) -> None:
        while queue and not state["broken"]:
            call = queue.pop()
            try:
                result = await client.chat(judge.chat, call.messages, **kwargs, **judge.params)
            except TuneportError as exc:
                state["fails"] += 1
                state["last"] = exc
                writer.add(call.label, call.index, call.key, call.request, None, None, None, None, _error_dict(exc),
                           sample=call.sample)  # fmt: skip
                if state["fails"] >= _BREAKER:
                    state["broken"] = True
            else:
                state["fails"] = 0
                usage = result.usage
                writer.add(call.label, call.index, call.key, call.request,
                           {"text": result.text, "finish_reason": result.finish_reason, "model": result.model},
                           round(result.latency_ms, 3), usage.prompt_tokens, usage.completion_tokens, None,
                           sample=call.sample)  # fmt: skip
            state["done"] += 1
            if progress is not None:
                progress(name, state["done"], total)

    async with InferenceClient(concurrency=concurrency, retry=retry) as client:
        await asyncio.gather(*(worker(client) for _ in range(min(concurrency, total))))
    if state["broken"]:
        last = state["last"]
        reason = last.message if isinstance(last, TuneportError) else str(last)
        for call in queue:
            writer.add(call.label, call.index, call.key, call.request, None, None, None, None,
                       {"type": "NotAsked", "message": f"not asked: the judge {judge.reference} failed {_BREAKER} "
                        f"requests in a row (last error: {reason})"}, sample=call.sample)  # fmt: skip


# --------------------------------------------------------------------------------------------------- the runs


def run_eval(
    spec: EvalSpec | str | Path | None = None,
    *,
    endpoints: Sequence[str | EndpointConfig] = (),
    graders: Sequence[str | Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    train: str | Path | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
    resume: str | None = None,
    hourly: Mapping[str, Decimal] | Decimal | None = None,
    name: str | None = None,
    judges: Sequence[str] = (),
    store: Store | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate endpoints on a held-out dataset and return the run dict (see the module docstring).

    ``judges`` (endpoint references, like ``endpoints``) each add a pairwise LLM judge grader: after both
    endpoints of a pair have answered an item, the judge is asked which answer is better, in both orders, and a
    win counts only when both orders agree (``result["pairwise"]``). Judge answers are cached like any other.

    ``spec`` is an :class:`~tuneport.evaluation.spec.EvalSpec`, a spec file, or a held-out ``.jsonl`` (then
    ``endpoints`` name what to evaluate). Re-running the same evaluation continues an unfinished run of it;
    ``resume=RUN_ID`` continues that run exactly as it was configured. Raises EvaluationError, SpecError,
    DataError or EndpointError before any request for anything the user has to fix.
    """
    from tuneport.evaluation.spec import load_items
    from tuneport.jobs.store import Store

    own = store is None
    store = store or Store()
    try:
        if resume is not None:
            row = store.get_eval_run(resume)
            if row is None or (row.get("metadata") or {}).get("kind") != "eval":
                raise EvaluationError(
                    f"No evaluation run {resume!r} to resume.",
                    hint="`tuneport eval` prints the run id; re-running the same evaluation also resumes it.",
                )
            config = row["config"]
            from tuneport.evaluation.spec import EvalSpec

            spec_obj = EvalSpec.model_validate(config["spec"])
            if concurrency is not None:
                spec_obj = spec_obj.model_copy(update={"concurrency": concurrency})
            items, sha = load_items(spec_obj.dataset)
            _check_same_dataset(row, sha)
            stored_judges = config.get("judges")
            targets = _targets_from_config(config["targets"], store)
            for t in targets:  # a price given now applies where the run had none
                if t.hourly is None and isinstance(hourly, Decimal):
                    t.hourly = hourly
                elif t.hourly is None and isinstance(hourly, Mapping):
                    t.hourly = hourly.get(t.label)
            run_id = resume
        else:
            if spec is None:
                raise EvaluationError("run_eval needs a spec, a spec file or a dataset")
            spec_obj = build_spec(spec, endpoints=endpoints, graders=graders, params=params, train=train,
                                  concurrency=concurrency, name=name, judges=judges)  # fmt: skip
            targets = _resolve_targets(spec_obj, store, hourly)
            items, sha = load_items(spec_obj.dataset)
            run_id = None
            stored_judges = None
        grader_configs, note = _grader_configs(spec_obj, items)
        graders_now = _make_graders(grader_configs)  # a bad grader config fails here, before any request
        if stored_judges and set(stored_judges) == {g.id for g in graders_now if g.kind == "pairwise"}:
            judges_now = _judges_from_config(
                stored_judges
            )  # --resume asks the judge the run was started with
        else:
            judges_now = _resolve_judges(grader_configs, store)
        leakage = _leakage(spec_obj, targets, store)
        config = {"spec": spec_obj.model_dump(mode="json"), "targets": [t.config() for t in targets],
                  "graders": grader_configs, "grader_note": note,
                  "judges": {gid: j.config() for gid, j in judges_now.items()}}  # fmt: skip
        fingerprint = _run_fingerprint(sha, targets, "eval")
        if run_id is None:
            run_id = _unfinished_run(store, fingerprint)
        if run_id is None:
            row = store.create_eval_run(
                name=spec_obj.name, status="running", config=config, spec_hash=fingerprint, dataset_sha256=sha,
                endpoints=[t.label for t in targets],
                metadata={"kind": "eval", "timing": {}, "leakage": leakage, "dataset_path": str(spec_obj.dataset)},
            )  # fmt: skip
            run_id = row["id"]
        else:
            row = store.get_eval_run(run_id)
            assert row is not None
            meta = {**(row.get("metadata") or {}), "leakage": leakage}
            store.update_eval_run(run_id, status="running", config=config, metadata=meta)
        collected = _collect(store, run_id, targets, items, concurrency=spec_obj.concurrency, use_cache=use_cache,
                             retry=retry, timeout=timeout, progress=progress)  # fmt: skip
        meta = dict((store.get_eval_run(run_id) or {}).get("metadata") or {})
        timing = dict(meta.get("timing") or {})
        for label, t in collected.timing.items():
            old = timing.get(label) or {"wall_s": 0.0, "requests": 0}
            timing[label] = {"wall_s": old["wall_s"] + t.wall_s, "requests": old["requests"] + t.requests,
                             "concurrency": spec_obj.concurrency}  # fmt: skip
        meta["timing"] = timing
        meta["last_session"] = {"asked": collected.asked, "cached": collected.cached}
        store.update_eval_run(run_id, metadata=meta)
        judged = _judge_pairs(store, run_id, [t.label for t in targets], items, graders_now, judges_now,
                              concurrency=spec_obj.concurrency, use_cache=use_cache, retry=retry, timeout=timeout,
                              progress=progress)  # fmt: skip
        if judged:
            meta["last_session"]["judge"] = judged
            store.update_eval_run(run_id, metadata=meta)
        result = _assemble(store, run_id, items=items)
        store.update_eval_run(
            run_id, status=result["status"], finished_at=int(time.time()),
            summary={"summary": result["summary"], "comparisons": result["comparisons"],
                     "pairwise": [{k: v for k, v in p.items() if k != "items"} for p in result["pairwise"]],
                     "warnings": result["warnings"]},
        )  # fmt: skip
        result["session"] = {"asked": collected.asked, "cached": collected.cached,
                             "wall_s": {k: v.wall_s for k, v in collected.timing.items()}}  # fmt: skip
        if judged:
            result["session"]["judge"] = judged
        return result
    finally:
        if own:
            store.close()


def _check_same_dataset(row: Mapping[str, Any], sha: str) -> None:
    if row.get("dataset_sha256") and row["dataset_sha256"] != sha:
        raise EvaluationError(
            f"the dataset of run {row['id']} has changed since it ran (sha256 {row['dataset_sha256'][:12]}... "
            f"then, {sha[:12]}... now)",
            hint="Restore the original file, or start a new evaluation on the new one.",
        )


def _targets_from_config(configs: Sequence[Mapping[str, Any]], store: Store) -> list[_Target]:
    from tuneport.endpoints.client import ChatEndpoint

    targets = []
    for c in configs:
        chat = None
        if c["kind"] == "live":
            chat = ChatEndpoint(name=c["reference"], base_url=c["base_url"], model=c["model"],
                                api_key_env=c.get("api_key_env"), kind=c.get("endpoint_kind") or "url",
                                job_id=c.get("job_id"))  # fmt: skip
        targets.append(
            _Target(label=c["name"], reference=c["reference"], kind=c["kind"], base_url=c["base_url"],
                    model=c["model"], job_id=c.get("job_id"), system=c.get("system"), few_shot=c.get("few_shot"),
                    params=dict(c.get("params") or {}),
                    hourly=None if c.get("hourly_usd") is None else Decimal(c["hourly_usd"]),
                    endpoint_kind=c.get("endpoint_kind") or "url", chat=chat, recording=c.get("recording"))
        )  # fmt: skip
    return targets


def _grader_configs(spec: EvalSpec, items: Sequence[EvalItem]) -> tuple[list[Any], str | None]:
    """The run's grader configs. A pairwise judge compares endpoints but scores none of them, so when every
    grader given is a judge, the graders chosen from the data are added in front (and the run says so)."""
    from tuneport.evaluation.graders import GRADERS

    given = [dict(g) if isinstance(g, Mapping) else g for g in spec.graders or []]

    def pairwise(config: Any) -> bool:
        name = config.get("name") if isinstance(config, Mapping) else config
        cls = GRADERS.get(name) if isinstance(name, str) else None
        return cls is not None and cls.kind == "pairwise"

    if given and not all(pairwise(c) for c in given):
        return given, None
    configs, why = default_graders(items)
    if given:
        return configs + given, f"only a pairwise judge was given, so its endpoints are also scored: {why}"
    return configs, f"no graders were given: {why}"


def _unfinished_run(store: Store, fingerprint: str) -> str | None:
    for run in store.list_eval_runs():
        if run.get("spec_hash") == fingerprint and run.get("status") != "complete":
            return run["id"]
    return None


def _leakage(spec: EvalSpec, targets: Sequence[_Target], store: Store) -> dict[str, Any] | None:
    """Check the eval items against the training data: ``spec.train``, else the training file of any job an
    endpoint came from (when that file is here)."""
    from tuneport.data.leakage import find_leakage

    train = spec.train
    source = "--train"
    if train is None:
        for t in targets:
            if not t.job_id:
                continue
            job = store.get_job(t.job_id) or {}
            candidates = [(job.get("spec") or {}).get("training_file"), job.get("training_file")]
            found = next((c for c in candidates if isinstance(c, str) and Path(c).is_file()), None)
            if found:
                train, source = found, f"training file of job {t.job_id} ({t.label})"
                break
    if train is None:
        return None
    report = find_leakage(train, spec.dataset, max_hits=20).to_dict()
    report["source"] = source
    return report


# ------------------------------------------------------------------------------------------ assembling the run


def load_run(run_id: str, *, store: Store | None = None) -> dict[str, Any]:
    """Rebuild a run's dict from the store (re-reading its dataset, whose sha256 must still match, and grading
    the stored responses with the run's graders)."""
    from tuneport.jobs.store import Store

    own = store is None
    store = store or Store()
    try:
        return _assemble(store, run_id)
    finally:
        if own:
            store.close()


def _assemble(store: Store, run_id: str, *, items: Sequence[EvalItem] | None = None) -> dict[str, Any]:
    from tuneport.evaluation.spec import EvalSpec, load_items

    row = store.get_eval_run(run_id)
    if row is None:
        raise EvaluationError(
            f"No evaluation run {run_id!r} in the store.", hint="`tuneport eval` prints run ids."
        )
    meta = row.get("metadata") or {}
    if meta.get("kind") != "eval":
        raise EvaluationError(f"{run_id} is a recording, not an evaluation run.")
    config = row["config"]
    spec = EvalSpec.model_validate(config["spec"])
    if items is None:
        try:
            items, sha = load_items(spec.dataset)
        except TuneportError as exc:
            raise EvaluationError(
                f"run {run_id}: its dataset {spec.dataset} cannot be read again: {exc.message}",
                hint="The run's answers are kept; restore the dataset file at that path to see the run.",
            ) from None
        _check_same_dataset(row, sha)
    targets = config["targets"]
    labels = [t["name"] for t in targets]
    all_graders = _make_graders(config["graders"])
    graders = [g for g in all_graders if g.kind != "pairwise"]
    responses: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in labels}
    for r in store.list_responses(run_id):
        if r["endpoint"] in responses and r["sample"] == 0:
            responses[r["endpoint"]][r["item_index"]] = r

    out_items: list[dict[str, Any]] = []
    grades: dict[str, dict[str, list[Any]]] = {label: {g.id: [] for g in graders} for label in labels}
    ok: dict[str, list[bool]] = {label: [] for label in labels}
    warnings: list[str] = []
    for item in items:
        results: dict[str, Any] = {}
        for label in labels:
            r = responses[label].get(item.index)
            result = _item_result(r, item, graders)
            results[label] = result
            good = result["error"] is None
            ok[label].append(good)
            for g in graders:
                grades[label][g.id].append(result["_grades"].get(g.id))
            result.pop("_grades")
        out_items.append({"index": item.index, "line": item.lineno, "prompt": item.prompt,
                          "reference": item.reference, "results": results})  # fmt: skip

    timing = meta.get("timing") or {}
    summary: dict[str, Any] = {}
    for t in targets:
        label = t["name"]
        summary[label] = _endpoint_summary(
            t, graders, grades[label], ok[label], responses[label], timing.get(label)
        )
        errors = summary[label]["errors"]
        if errors:
            reasons = _count(
                (responses[label].get(i) or {}).get("error", {}) or {"message": "no answer recorded"}
                for i, good in enumerate(ok[label])
                if not good
            )
            warnings.append(
                f"{label}: {errors} of {len(items)} items have no answer ({reasons}); they are excluded from "
                f"{label}'s scores and from both sides of its comparisons. Resume with "
                f"`tuneport eval --resume {run_id}`."
            )
        for g in graders:
            s = summary[label]["graders"][g.id]
            if s["n"] and s["n_errors"] * 2 > s["n"]:
                warnings.append(
                    f"{label}: grader {g.id!r} could not grade {s['n_errors']} of {s['n']} answers "
                    f"({', '.join(s['error_reasons'])}): it may not fit this data"
                )

    comparisons = []
    from tuneport.evaluation.graders import paired_grades
    from tuneport.evaluation.stats import compare_paired

    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            both = [x and y for x, y in zip(ok[a], ok[b], strict=True)]
            n_request_errors = both.count(False)
            for g in graders:
                ga = [r for r, keep in zip(grades[a][g.id], both, strict=True) if keep]
                gb = [r for r, keep in zip(grades[b][g.id], both, strict=True) if keep]
                a_s, b_s, a_p, b_p, dropped = paired_grades(ga, gb)
                excluded = {"request_errors": n_request_errors, "ungradable": dropped}
                if not a_s:
                    warnings.append(
                        f"{a} vs {b} ({g.id}): no item has a graded answer from both, so there is nothing to "
                        "compare"
                    )
                    continue
                comparison = compare_paired(a_s, b_s, a_p, b_p)
                comparisons.append(
                    {"a": a, "b": b, "grader": g.id, "excluded": excluded, **comparison.to_dict()}
                )

    pairwise, judged_all = _pairwise_results(
        store, run_id, items, labels, out_items, [g for g in all_graders if g.kind == "pairwise"],
        config.get("judges") or {}, warnings,
    )  # fmt: skip

    leakage = meta.get("leakage")
    if leakage and leakage.get("leaked"):
        warnings.append(
            f"leakage: {leakage['leaked']} of {leakage['candidate']['items']} eval items repeat training items "
            f"({leakage['exact']} exactly, {leakage['normalized']} after normalization; checked against "
            f"{leakage.get('source', leakage['reference']['path'])}): their scores measure memory, not skill"
        )
    notes = [config["grader_note"]] if config.get("grader_note") else []
    status = "complete" if all(all(v) for v in ok.values()) and judged_all else "incomplete"
    return {
        "id": run_id,
        "name": row.get("name"),
        "created_at": row["created_at"],
        "status": status,
        "dataset": {"path": str(spec.dataset), "sha256": row.get("dataset_sha256"), "n_items": len(items)},
        "endpoints": [{k: t[k] for k in ("name", "base_url", "model", "kind", "job_id")} for t in targets],
        "graders": [{"id": g.id, "name": g.name, "params": g.params} for g in graders],
        "params": spec.params.body(),
        "items": out_items,
        "summary": summary,
        "comparisons": comparisons,
        "pairwise": pairwise,
        "warnings": warnings,
        "notes": notes,
        "leakage": leakage,
    }


class _NoVerdict(Exception):
    """The run holds no usable judge answer for one order of one item (never asked, or the request failed)."""


def _pairwise_results(
    store: Store,
    run_id: str,
    items: Sequence[EvalItem],
    labels: Sequence[str],
    out_items: Sequence[Mapping[str, Any]],
    graders: Sequence[Grader],
    judges: Mapping[str, Mapping[str, Any]],
    warnings: list[str],
) -> tuple[list[dict[str, Any]], bool]:
    """The pairwise judge's verdicts from the stored judge answers, decided by the grader itself (a win only when
    both orders agree); returns (the run dict's ``pairwise`` entries, whether every verdict the run needs is
    there). Items where either endpoint has no answer are excluded and counted; an answer with no parseable
    verdict is a per-item error, never a tie; a judge request that failed leaves the run incomplete."""
    from tuneport.evaluation.graders import summarize_pairwise

    if not graders or len(labels) < 2:
        return [], True
    rows = _judge_rows(store, run_id)
    complete = True
    entries: list[dict[str, Any]] = []
    for g in graders:
        jcfg = judges.get(g.id) or {}
        judge_view = {
            "name": jcfg.get("reference"),
            "base_url": jcfg.get("base_url"),
            "model": jcfg.get("model"),
        }
        jkey = _judge_key_fn(jcfg)
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                label = _judge_label(g.id, a, b)
                results = []
                item_rows: list[dict[str, Any]] = []
                excluded = {"no_answer": 0, "judge_failed": 0}
                for item, out in zip(items, out_items, strict=True):
                    ra, rb = out["results"][a], out["results"][b]
                    missing = [x for x, r in ((a, ra), (b, rb)) if r["output"] is None]
                    if missing:
                        excluded["no_answer"] += 1
                        item_rows.append({"index": item.index, "winner": None, "excluded": True, "orders": [],
                                          "error": f"excluded: no answer from {' and '.join(missing)}"})  # fmt: skip
                        continue
                    first = _judge_messages(g, item, ra["output"], rb["output"])
                    stored = _stored_judge(rows, label, item.index, first, jkey)
                    try:
                        res = g.compare(ra["output"], rb["output"], item={"messages": item.prompt},  # type: ignore[attr-defined]
                                        reference=item.reference, judge=stored)  # fmt: skip
                    except _NoVerdict as exc:
                        excluded["judge_failed"] += 1
                        complete = False
                        item_rows.append({"index": item.index, "winner": None, "excluded": True, "orders": [],
                                          "error": str(exc)})  # fmt: skip
                        continue
                    results.append(res)
                    item_rows.append({
                        "index": item.index, "winner": res.winner, "excluded": False,
                        "error": None if res.error is None else f"unparseable judge output: {res.error}",
                        "orders": [{"order": order, "verdict": verdict, "raw": raw}
                                   for order, verdict, raw in zip(("a-b", "b-a"), res.verdicts, res.raw, strict=True)],
                        "details": res.details,
                    })  # fmt: skip
                summary = summarize_pairwise(results).to_dict()
                entries.append({"a": a, "b": b, "grader": g.id, "judge": judge_view, "excluded": excluded,
                                "summary": summary, "items": item_rows})  # fmt: skip
                what = f"{a} vs {b} ({g.id})"
                if excluded["judge_failed"]:
                    warnings.append(
                        f"{what}: the judge gave no verdict on {excluded['judge_failed']} items (its requests failed "
                        f"or were not made); they are left out. Resume with `tuneport eval --resume {run_id}`."
                    )
                if summary["errors"]:
                    warnings.append(
                        f"{what}: the judge's answer had no parseable verdict ([[A]], [[B]] or [[C]]) on "
                        f"{summary['errors']} of {summary['n']} items; they count as errors, not ties"
                    )
    return entries, complete


def _stored_judge(
    rows: Mapping[tuple[str, int, int], Mapping[str, Any]],
    label: str,
    index: int,
    first: list[dict[str, Any]],
    key: Callable[[list[dict[str, Any]]], str],
) -> Callable[[list[dict[str, Any]]], str]:
    """A judge callable that answers from the run's stored judge responses (so the grader's own ``compare``
    decides the verdict, for a finished run and for :func:`load_run` alike). A stored answer counts only if it
    was given to exactly these messages (same outputs, same prompt, same judge)."""

    def judge(messages: list[dict[str, Any]]) -> str:
        row = rows.get((label, index, 0 if messages == first else 1))
        if row is None or row["cache_key"] != key(messages):
            raise _NoVerdict("no judge verdict: the judge was not asked (the run stopped before this item)")
        if row["error"] is not None:
            err = row["error"]
            raise _NoVerdict(
                "judge request failed: " + (err.get("message") if isinstance(err, dict) else str(err))
            )
        text, _ = _response_text(row["response"])
        if text is None:
            raise _NoVerdict("the stored judge response has no text")
        return text

    return judge


def _judge_key_fn(config: Mapping[str, Any]) -> Callable[[list[dict[str, Any]]], str]:
    """The cache key of a judge request, from the judge as the run stored it."""
    from tuneport.endpoints.client import ChatEndpoint

    chat = ChatEndpoint(name=str(config.get("reference")), base_url=str(config.get("base_url")),
                        model=str(config.get("model")))  # fmt: skip
    judge = _Judge(
        "", str(config.get("reference")), chat.base_url, chat.model, dict(config.get("params") or {}), chat
    )
    return lambda messages: _cache_key(judge, messages)


def _count(errors: Any) -> str:
    from collections import Counter

    counts = Counter(str((e or {}).get("type") or "error") for e in errors)
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


def _item_result(r: Mapping[str, Any] | None, item: EvalItem, graders: Sequence[Grader]) -> dict[str, Any]:
    if r is None:
        return {"output": None, "error": "no answer recorded (the run stopped before this item)",
                "latency_ms": None, "usage": {}, "cached": False, "grades": {}, "_grades": {}}  # fmt: skip
    usage = {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"]}
    if r["error"] is not None:
        err = r["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        return {"output": None, "error": message, "latency_ms": r["latency_ms"], "usage": usage, "cached": False,
                "grades": {}, "_grades": {}}  # fmt: skip
    text, finish = _response_text(r["response"])
    if text is None:
        return {"output": None, "error": "the stored response has no text", "latency_ms": r["latency_ms"],
                "usage": usage, "cached": False, "grades": {}, "_grades": {}}  # fmt: skip
    item_obj = {"messages": item.prompt}
    gr = {g.id: g.grade(text, item.reference, item_obj) for g in graders}
    return {"output": text, "error": None, "finish_reason": finish, "latency_ms": r["latency_ms"], "usage": usage,
            "cached": bool((r["response"] or {}).get("cached_from")),
            "grades": {k: v.to_dict() for k, v in gr.items()}, "_grades": gr}  # fmt: skip


def _endpoint_summary(
    target: Mapping[str, Any],
    graders: Sequence[Grader],
    grades: Mapping[str, list[Any]],
    ok: list[bool],
    responses: Mapping[int, Mapping[str, Any]],
    timing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from tuneport.evaluation.stats import latency_summary

    n_ok = sum(ok)
    graded = {g.id: g.summarize([r for r in grades[g.id] if r is not None]).to_dict() for g in graders}
    good = [responses[i] for i, flag in enumerate(ok) if flag]
    latencies = [r["latency_ms"] for r in good if r["latency_ms"] is not None]
    lat = latency_summary(latencies)
    prompt = sum(r["prompt_tokens"] or 0 for r in good)
    completion = sum(r["completion_tokens"] or 0 for r in good)
    tokens = {"prompt": prompt, "completion": completion,
              "per_item": {"prompt": prompt / n_ok if n_ok else None,
                           "completion": completion / n_ok if n_ok else None}}  # fmt: skip
    return {
        "n_items": len(ok),
        "n_answered": n_ok,
        "graders": graded,
        "latency": lat.to_dict() if lat else None,
        "tokens": tokens,
        "cost": _cost(target, n_ok, prompt, completion, timing),
        "errors": len(ok) - n_ok,
    }


# ----------------------------------------------------------------------------------------------- recordings


def record_endpoint(
    endpoint: str,
    dataset: str | Path,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    system: str | None = None,
    concurrency: int = 8,
    use_cache: bool = True,
    store: Store | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ask ``endpoint`` every item of ``dataset`` and keep its answers as the recording ``name`` (default: the
    endpoint reference), usable later as ``recorded:NAME``. Recording the same endpoint and data again under the
    same name continues an unfinished recording. Returns {"name", "id" (the run id, under the key ``run_eval``
    uses), "run_id" (the same, kept for scripts), "status", "n_items", "recorded", "errors", "endpoint"}."""
    from tuneport.endpoints.client import EndpointError
    from tuneport.evaluation.spec import EndpointConfig, EvalSpec, SamplingParams, load_items
    from tuneport.jobs.store import Store

    if endpoint.startswith(RECORDED_PREFIX):
        raise EndpointError(f"{endpoint} is already a recording.", hint="Record a live endpoint.")
    label = name or endpoint
    own = store is None
    store = store or Store()
    try:
        sampling = SamplingParams(**{k: v for k, v in (params or {}).items() if v is not None})
        spec = EvalSpec(dataset=str(dataset), endpoints=[EndpointConfig(endpoint=endpoint, name=label, system=system)],
                        params=sampling, concurrency=concurrency)  # fmt: skip
        (target,) = _resolve_targets(spec, store, None)
        items, sha = load_items(dataset)
        fingerprint = _run_fingerprint(sha, [target], "recording")
        run_id = None
        for run in store.list_eval_runs():
            if run.get("name") == _RECORDING_RUN + label and run.get("spec_hash") == fingerprint:
                run_id = run["id"]
                break
        meta = {"kind": "recording", "recording": label, "base_url": target.base_url, "model": target.model,
                "job_id": target.job_id, "endpoint_kind": target.endpoint_kind, "dataset_path": str(dataset),
                "params": target.params}  # fmt: skip
        if run_id is None:
            run_id = store.create_eval_run(
                name=_RECORDING_RUN + label, status="running", config={"targets": [target.config()]},
                spec_hash=fingerprint, dataset_sha256=sha, endpoints=[label], metadata=meta,
            )["id"]  # fmt: skip
        _collect(store, run_id, [target], items, concurrency=concurrency, use_cache=use_cache, retry=retry,
                 timeout=timeout, progress=progress)  # fmt: skip
        rows = store.list_responses(run_id, endpoint=label)
        errors = sum(1 for r in rows if r["error"] is not None)
        recorded = sum(1 for r in rows if r["error"] is None)
        status = "complete" if recorded == len(items) else "incomplete"
        store.update_eval_run(run_id, status=status, finished_at=int(time.time()))
        return {"name": label, "id": run_id, "run_id": run_id, "status": status, "n_items": len(items), "recorded": recorded,
                "errors": errors, "endpoint": target.describe() | {"kind": "live"},
                "use_as": RECORDED_PREFIX + label}  # fmt: skip
    finally:
        if own:
            store.close()
