"""Verification (on the Pruning page): the edits of the current verdicts and what seviz measured for them.

Evaluations are ``seviz evaluate --json`` reports (:func:`seviz.pruning.read_evaluation`)
found beside the store (``seviz demo`` writes ``evaluation.json`` and
``stage5.json``) or picked by the user. The page says whether one measured
exactly the current edits, and shows accuracy, agreement, KL, parameters,
FLOPs and, when measured, each block's "remove it alone" accuracy change.

"Evaluate these edits" runs :func:`seviz.pruning.evaluate_recommendation` (the
library's evaluate, the same JSON as the CLI) in a background thread and
writes the report beside the store; a progress bar follows it while the rest
of the page stays usable. The section is a fragment: its own controls rerun
only it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from seviz.analysis import cache_folder
from seviz.app.views import _charts, _data
from seviz.errors import SevizError
from seviz.pruning import (
    EvaluationError,
    EvaluationReport,
    Recommendation,
    evaluate_recommendation,
    find_evaluations,
    read_evaluation,
)
from seviz.store import Store

log = logging.getLogger(__name__)

_ACTIONS = {"identity": "remove the SE branch", "constant": "fold the mean gate into the preceding BatchNorm"}
_POLL_S = 1.0


@dataclass
class Job:
    """One evaluation running (or run) in a background thread; read by every rerun."""

    out: Path
    done: int = 0
    total: int = 0
    error: str | None = None
    finished: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total


@st.cache_resource(show_spinner=False)
def jobs() -> dict[str, Job]:
    """The evaluations started in this app process, by key (kept across reruns and sessions)."""
    return {}


def edits(rec: Recommendation) -> dict[str, str]:
    """Block -> verdict of every block the current verdicts edit (``identity`` or ``constant``)."""
    return {b.name: b.verdict for b in rec.blocks if b.verdict != "keep"}


def describe(report: EvaluationReport, rec: Recommendation) -> tuple[bool, str]:
    """Whether ``report`` measured exactly the current edits, and a sentence saying so."""
    measured, current = report.edited_blocks, edits(rec)
    if measured == current:
        return True, f"It measured exactly the edits of these verdicts ({len(current)} blocks)."
    listed = [f"{name} ({action})" for name, action in measured.items()]
    what = ", ".join(listed[:6]) + (f" and {len(listed) - 6} more" if len(listed) > 6 else "") or "no edit"
    return False, (
        f"It measured other edits than these verdicts make ({len(current)} blocks): {what}. "
        "Evaluate these edits below, or change the thresholds."
    )


def render(path: Path, opened: Store, rec: Recommendation) -> None:
    st.header("Verification")
    current = edits(rec)
    if current:
        st.markdown(f"**The edits of these verdicts** ({len(current)} of {len(rec.blocks)} blocks):")
        # Static tables (a row a block): the page loads no data-grid code for them.
        st.table(
            pd.DataFrame(
                [
                    (b.name, b.verdict, _ACTIONS[b.verdict], b.module, b.params)
                    for b in rec.blocks
                    if b.verdict in _ACTIONS
                ],
                columns=["block", "verdict", "edit", "module", "SE params"],
            )
            .style.format({"SE params": "{:,}"})
            .hide()
        )
    else:
        st.info("Every block is `keep` under these thresholds: there is no edit to verify.")
    _verification(path, opened, rec)


@st.fragment
def _verification(path: Path, opened: Store, rec: Recommendation) -> None:
    found = find_evaluations(path.parent)
    reports: dict[str, EvaluationReport] = {}
    for file in found:
        try:
            reports[file.name] = read_evaluation(file)
        except (EvaluationError, OSError) as error:
            st.warning(f"{file.name}: {error}")
    matching = [name for name, report in reports.items() if describe(report, rec)[0]]
    left, right = st.columns([2, 1])
    names = list(reports)
    chosen = None
    wanted = st.session_state.pop("eval_next", None)
    if wanted in names:
        st.session_state["eval_file"] = wanted  # a report the button just wrote
    if names:
        label = {name: f"{name} ({'these edits' if name in matching else 'other edits'})" for name in names}
        first = names.index(matching[0]) if matching else 0
        chosen = left.selectbox(
            "Evaluation",
            names,
            index=None if st.session_state.get("eval_file") in names else first,
            format_func=lambda name: label.get(name, name),
            key="eval_file",
            help=f"`seviz evaluate --json` reports found in {path.parent}.",
        )
    upload = right.file_uploader("... or pick one", type=["json"], key="eval_upload")
    report, source = None, ""
    if upload is not None:
        try:
            report = EvaluationReport.from_dict(json.loads(upload.getvalue()), source=repr(upload.name))
            source = upload.name
        except (EvaluationError, ValueError) as error:
            st.error(str(error))
    elif chosen is not None:
        report, source = reports[chosen], chosen
    if report is None and upload is None:
        st.info(
            f"No evaluation beside {path.name} yet. Run one below, or with "
            "`seviz evaluate --model M --weights W --recommendation rec.json --data DIR --per-block --json FILE`."
        )
    if report is not None:
        show_report(report, rec, source)
    _evaluate_controls(path, opened, rec)


def show_report(report: EvaluationReport, rec: Recommendation, source: str) -> None:
    """The measured figures of one evaluation, and its per-block deltas when it has them."""
    same, sentence = describe(report, rec)
    (st.success if same else st.warning)(
        f"{source}: {report.images:,} images ({report.labelled:,} labelled). {sentence}"
    )
    o, e = report.original, report.edited
    cols = st.columns(6)
    if o.top1 is not None and e.top1 is not None:
        cols[0].metric(
            "top-1 (edited)", f"{e.top1:.2%}", f"{100 * (e.top1 - o.top1):+.2f} pt vs {o.top1:.2%}"
        )
    if o.top5 is not None and e.top5 is not None:
        cols[1].metric(
            "top-5 (edited)", f"{e.top5:.2%}", f"{100 * (e.top5 - o.top5):+.2f} pt vs {o.top5:.2%}"
        )
    cols[2].metric(
        "top-1 agreement", f"{report.agreement_top1:.2%}", help="Images whose top-1 class is unchanged."
    )
    cols[3].metric(
        "mean KL", f"{report.kl:.4g}", help="Mean KL(original || edited) of the predictions, in nats."
    )
    cols[4].metric("params", f"{e.params:,}", _relative(o.params, e.params), delta_color="inverse")
    cols[5].metric(
        "MFLOPs / image", f"{e.flops / 1e6:,.2f}", _relative(o.flops, e.flops, 1e-6), delta_color="inverse"
    )
    if report.per_block:
        verdicts = {b.name: b.verdict for b in rec.blocks}
        data = pd.DataFrame(
            [
                {
                    "block": b.name,
                    "verdict": verdicts.get(b.name, "keep"),
                    "delta": None if b.delta_top1 is None else 100 * b.delta_top1,
                    "agreement": b.agreement_top1,
                    "kl": b.kl,
                }
                for b in report.per_block
            ]
        )
        if data["delta"].notna().any():
            st.vega_lite_chart(
                spec=_charts.verdict_deltas(
                    data.dropna(subset=["delta"]), "Remove one block alone: top-1 change"
                ),
                width="stretch",
            )
        st.table(
            data.rename(
                columns={"delta": "top-1 change (pt)", "agreement": "top-1 agreement", "kl": "mean KL"}
            )
            .style.format(
                {"top-1 change (pt)": "{:+.2f}", "top-1 agreement": "{:.2%}", "mean KL": "{:.4g}"},
                na_rep="not measured",
            )
            .hide()
        )


def _relative(before: int, after: int, scale: float = 1.0) -> str:
    return (
        f"{100 * (after - before) / before:+.2f}% vs {before * scale:,.{0 if scale == 1 else 2}f}"
        if before
        else ""
    )


def _job_key(path: Path, rec: Recommendation, folder: str, per_block: bool, per_class: int | None) -> str:
    text = json.dumps([str(path), rec.to_json(), folder, per_block, per_class])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _output(path: Path, key: str) -> Path:
    name = f"{path.stem}.evaluation-{key}.json"
    return path.parent / name if os.access(path.parent, os.W_OK) else cache_folder(path, writable=True) / name


def _evaluate_controls(path: Path, opened: Store, rec: Recommendation) -> None:
    st.markdown(
        "**Evaluate these edits** (the store's model, original against edited, on a labelled image folder)"
    )
    c1, c2, c3 = st.columns([4, 1, 1])
    folder = c1.text_input("Image folder", _data.image_folder(path), key="eval_data") or ""
    per_class = int(c2.number_input("Images per class (0: all)", 0, 1_000_000, 0, key="eval_per_class") or 0)
    per_block = bool(
        c3.checkbox("Per block", value=True, key="eval_per_block", help="Also remove each block alone.")
    )
    key = _job_key(path, rec, folder, per_block, per_class or None)
    registry = jobs()
    # This session's evaluation, followed even when the thresholds have moved since it started.
    mine = st.session_state.get("eval_job")
    job = registry.get(mine) if isinstance(mine, str) else None
    running = job is not None and not job.finished
    if st.button("Evaluate", key="eval_start", disabled=running or not folder, type="primary"):
        if not Path(folder).is_dir():
            st.error(f"image folder {folder!r} does not exist")
        else:
            job = registry.get(key)
            if job is None or (job.finished and job.error):
                job = start(path, rec, folder, per_block, per_class or None, key)
            st.session_state["eval_job"] = mine = key
            running = not job.finished
    if job is not None and isinstance(mine, str):
        if mine != key:
            st.caption("The evaluation below was started with other thresholds, folder or options.")
        st.fragment(_progress, run_every=_POLL_S if running else None)(mine)


def start(
    path: Path, rec: Recommendation, folder: str, per_block: bool, per_class: int | None, key: str
) -> Job:
    """Start evaluating ``rec``'s edits on ``folder`` in a background thread (once per key)."""
    registry = jobs()
    job = Job(out=_output(path, key))

    def run() -> None:
        try:
            report = evaluate_recommendation(
                path, rec, folder, per_block=per_block, images_per_class=per_class, on_batch=job.progress
            )
            job.out.parent.mkdir(parents=True, exist_ok=True)
            report.write_json(job.out, overwrite=True)
        except (SevizError, OSError) as error:
            job.error = str(error)
        except Exception as error:  # noqa: BLE001 - shown in the page; the thread must not die silently
            log.exception("evaluating %s failed", path)
            job.error = f"{type(error).__name__}: {error}"
        finally:
            job.finished = True

    job.thread = threading.Thread(target=run, name=f"seviz-evaluate-{key}", daemon=True)
    registry[key] = job
    job.thread.start()
    return job


def _progress(key: str) -> None:
    job = jobs().get(key)
    if job is None:
        return
    if not job.finished:
        share = job.done / job.total if job.total else 0.0
        if not job.total:
            text = "loading the model and images..."
        elif job.done < job.total:
            text = f"evaluating: batch {job.done} of {job.total}"
        else:
            text = f"evaluated {job.total} batches; timing both models and counting their FLOPs..."
        st.progress(min(1.0, share), text=text)
        return
    if job.error:
        st.error(f"The evaluation failed: {job.error}")
        return
    st.success(f"Wrote {job.out} (the report `seviz evaluate --json` writes).")
    st.download_button(
        "Download the report",
        job.out.read_bytes(),
        file_name=job.out.name,
        mime="application/json",
        key=f"eval_download_{key}",
        on_click="ignore",
    )
    if st.session_state.get("eval_shown") != key:  # select the new report in the list above, once
        st.session_state["eval_shown"] = key
        st.session_state["eval_next"] = job.out.name
        st.rerun()
