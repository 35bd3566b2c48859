"""The endpoints an evaluation asks, resolved: the endpoints under evaluation (live or ``recorded:NAME``) and
the judges of pairwise graders; how a request is keyed in the response cache and a run in the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from tuneport.endpoints.client import ChatEndpoint, EndpointError, resolve_endpoint
from tuneport.errors import EvaluationError
from tuneport.evaluation.configure import _make_graders, _split_grader_config
from tuneport.evaluation.spec import EvalSpec, SamplingParams
from tuneport.jobs.store import Store

#: ``recorded:NAME`` names a recording made with :func:`record_endpoint` (``tuneport eval record``).
RECORDED_PREFIX = "recorded:"

_RECORDING_RUN = "recording:"

#: The answers of an endpoint to the training sample (``--train-sample``) are stored under ``train:LABEL``.
TRAIN_PREFIX = "train:"


def train_label(label: str) -> str:
    """The store's endpoint column for ``label``'s answers to the training sample."""
    return TRAIN_PREFIX + label


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


def _targets_from_config(configs: Sequence[Mapping[str, Any]], store: Store) -> list[_Target]:
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
