"""Verdicts, the Markdown report and the latency chart of `perception bench`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.monitor import MONITOR_MS
from perception.bench.variants import OVERLAY, THROUGHPUT
from serving.files import atomic_write_bytes
from serving.loop import CRITICAL, STAGES

# The project's bars (DESIGN.md, Performance budgets; issue 13's loop overhead)
HEADLESS_OVER_MODEL = 1.10  # headless e2e p50 at most this many times model-only p50
OVERLAY_OVER_MODEL = 1.20  # ... with the overlay and video writer
SCENE_MS = 0.2  # tracking + lane geometry + warnings p50, 20 tracks
PRE_MS = 0.45  # preprocessing p50 in the loop
PRE_VS_BLOB = 1.5  # serving preprocessing at least this many times faster than blobFromImage
LOOP_VS_NAIVE = 1.3  # loop FPS (overlay and video, rendering a file: the throughput
# schedule, as `perception demo --out` runs) at least this many times the naive loop's
P99_OVER_P50 = 1.5  # e2e p99 at most this many times p50


def _v(check: str, value: float | None, limit: float, ok: bool | None, detail: str) -> dict:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return {"check": check, "status": status, "value": value, "limit": limit, "detail": detail}


def _variant(res: dict[str, Any], name: str) -> dict[str, Any] | None:
    v = next((v for v in res["variants"] if v["name"] == name), None)
    return v if v is not None and v["status"] == "ok" else None


def _at_most(check: str, value: float | None, limit: float, detail: str) -> dict:
    if value is None:
        return _v(check, None, limit, None, detail)
    return _v(check, value, limit, value <= limit, detail)


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The profile's budget and the project bars, each PASS, FAIL or SKIP."""
    b = res["target"]["budget"]
    p50, p99, fps = res["e2e"]["p50_ms"], res["e2e"]["p99_ms"], res["fps"]
    model = res["model"]["p50_ms"]
    out = [
        _at_most("e2e p50 <= budget (ms)", p50, b["e2e_p50_ms"], f"{p50:.2f} ms"),
        _at_most("e2e p99 <= budget (ms)", p99, b["e2e_p99_ms"], f"{p99:.2f} ms"),
        _v("FPS >= min_fps", fps, b["min_fps"], fps >= b["min_fps"], f"{fps:.1f} FPS"),
        _at_most(
            f"headless e2e p50 <= {HEADLESS_OVER_MODEL}x model p50",
            p50 / model,
            HEADLESS_OVER_MODEL,
            f"{p50:.2f} vs {model:.2f} ms ({p50 / model:.3f}x)",
        ),
    ]
    if (limit := b.get("model_p50_ms")) is not None:
        check = f"model-only p50 ({res['main_variant']}) <= budget (ms)"
        out.append(_at_most(check, model, limit, f"{model:.2f} ms"))
    ov = _variant(res, res["main_variant"] + OVERLAY)
    r = ov["e2e"]["p50_ms"] / model if ov else None
    detail = f"{ov['e2e']['p50_ms']:.2f} vs {model:.2f} ms ({r:.3f}x)" if ov and r else "not run"
    out.append(
        _at_most(
            f"overlay e2e p50 <= {OVERLAY_OVER_MODEL}x model p50", r, OVERLAY_OVER_MODEL, detail
        )
    )
    scene = res["micro"]["scene"]
    s50 = scene["track_stage"]["p50_ms"]
    detail = f"{s50:.3f} ms ({scene['tracks_mean']:.1f} tracks)"
    out.append(
        _at_most(f"tracking + geometry + warnings p50 <= {SCENE_MS} ms", s50, SCENE_MS, detail)
    )
    pre = res["stages"]["pre"]["p50_ms"]
    out.append(_at_most(f"preprocess p50 in the loop <= {PRE_MS} ms", pre, PRE_MS, f"{pre:.3f} ms"))
    ratio = res["micro"]["preprocess"]["blob_over_serving_p50"]
    out.append(
        _v(
            f"preprocess >= {PRE_VS_BLOB}x faster than blobFromImage (p50)",
            ratio,
            PRE_VS_BLOB,
            ratio >= PRE_VS_BLOB,
            f"{ratio:.2f}x",
        )
    )
    out.append(_vs_naive(res, _variant(res, res["main_variant"] + THROUGHPUT)))
    out.append(
        _at_most(f"e2e p99 <= {P99_OVER_P50}x p50", p99 / p50, P99_OVER_P50, f"{p99 / p50:.2f}x")
    )
    out.append(_int8(res))
    mon = res["micro"].get("monitor")
    m50 = mon["frame"]["p50_ms"] if mon else None
    detail = f"{m50:.3f} ms (profile: {mon['profile'] or 'none'})" if mon else "not run"
    out.append(_at_most(f"monitor per frame p50 <= {MONITOR_MS} ms", m50, MONITOR_MS, detail))
    return out


def _vs_naive(res: dict[str, Any], ours: dict[str, Any] | None) -> dict[str, Any]:
    naive = _variant(res, "naive")
    check = (f"loop FPS >= {LOOP_VS_NAIVE}x naive loop FPS (both drawing and writing video; "
             "ours on the throughput schedule)")  # fmt: skip
    if not (naive and ours and naive["fps"]):
        return _v(check, None, LOOP_VS_NAIVE, None, "naive loop or throughput variant not run")
    r = ours["fps"] / naive["fps"]
    detail = f"{ours['fps']:.1f} vs {naive['fps']:.1f} FPS ({r:.2f}x)"
    return _v(check, r, LOOP_VS_NAIVE, r >= LOOP_VS_NAIVE, detail)


def _int8(res: dict[str, Any]) -> dict[str, Any]:
    i8, f32 = _variant(res, "int8"), _variant(res, "fp32")
    if not i8 or not f32:
        return _v("INT8 faster than FP32 (e2e p50)", None, 1.0, None, "INT8 or FP32 not run")
    a, b = i8["e2e"]["p50_ms"], f32["e2e"]["p50_ms"]
    ai, bi = i8["stages"]["infer"]["p50_ms"], f32["stages"]["infer"]["p50_ms"]
    detail = f"e2e {a:.2f} vs {b:.2f} ms ({b / a:.2f}x), infer {ai:.2f} vs {bi:.2f} ms"
    return _v("INT8 faster than FP32 (e2e p50)", b / a, 1.0, a < b, detail)


def _fmt(x: Any, nd: int = 2) -> str:
    if isinstance(x, float):
        return f"{x:.{nd}f}" if np.isfinite(x) else "n/a"
    return "n/a" if x is None else str(x)


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table; floats with two decimals."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]


def markdown(res: dict[str, Any]) -> str:
    """bench.md: machine, cold start, the variants, stages, micro-benchmarks, verdicts."""
    fp, t, fr = res["fingerprint"], res["target"], res["frames"]
    machine = [
        fp["cpu"],
        f"{fp['cores']['logical']}/{fp['cores']['affinity']}",
        fp["gpu"]["name"] or "none",
        fp["versions"]["onnxruntime"],
        f"{fp['versions']['numba']} ({fp['numba_threading']['layer']})",
        fp["versions"]["opencv"],
    ]
    lines = [
        f"# Benchmark: {t['name']} ({t['path']})",
        "",
        f"{t['description']}. Main variant **{res['main_variant']}** on "
        f"{', '.join(res['providers_used'])}; {fr['timed']} timed frames per variant "
        f"({fr['distinct']} distinct, {fr['width']}x{fr['height']}, test split), "
        f"{fr['warmup']} warm-up frames excluded. e2e: frame decoded to result (warnings).",
        "",
        "## Machine",
        "",
        *table(
            ["cpu", "cores (logical/affinity)", "gpu", "onnxruntime", "numba (layer)", "opencv"],
            [machine],
        ),
        "",
        "## Cold start (s)",
        "",
        *table(list(res["cold_start"]), [list(res["cold_start"].values())]),
        "",
        "## The loop end to end, side by side (ms)",
        "",
        *_variant_rows(res),
        "",
        "## Stages of the main variant (ms)",
        "",
        *_stage_rows(res),
        "",
        *_micro_rows(res["micro"]),
        "",
        "## Paced run",
        "",
        *_paced_rows(res["paced"]),
        "",
        "## Verdicts",
        "",
        *table(
            ["check", "result", "value"],
            [[v["check"], v["status"], v["detail"]] for v in res["verdicts"]],
        ),
        "",
        *[f"- {n}" for n in res["notes"]],
    ]
    return "\n".join(lines) + "\n"


def _variant_rows(res: dict[str, Any]) -> list[str]:
    model = res["model"]["p50_ms"]
    rows: list[list[Any]] = [["model only", "ok", model, res["model"]["p99_ms"], 1.0] + [""] * 8]
    for v in res["variants"]:
        if v["status"] != "ok":
            rows.append([v["name"], v["status"]] + [""] * 9 + [v["lane_accuracy"], v["map50"]])
            continue
        e, s = v["e2e"], v["stages"]
        rows.append(
            [
                v["name"],
                "ok",
                e["p50_ms"],
                e["p99_ms"],
                e["p50_ms"] / model,
                v["fps"],
                *(s[k]["p50_ms"] for k in ("pre", "infer", "post", "track", "draw")),
                v["output_latency"]["p50_ms"],
                v["lane_accuracy"],
                v["map50"],
            ]
        )
    head = [
        "variant",
        "status",
        "e2e p50",
        "e2e p99",
        "/ model",
        "FPS",
        "pre",
        "infer",
        "post",
        "track",
        "draw",
        "output p50",
        "lane acc",
        "mAP50",
    ]
    return table(head, rows)


def _stage_rows(res: dict[str, Any]) -> list[str]:
    keys = ["p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "cv"]
    rows = [[s] + [res["stages"][s][k] for k in keys] for s in CRITICAL]
    rows.append(["model only"] + [res["model"][k] for k in keys])
    rows.append(["**e2e**"] + [res["e2e"][k] for k in keys])
    return table(["stage", "p50", "p90", "p99", "max", "mean", "cv"], rows)


def _paced_rows(p: dict[str, Any]) -> list[str]:
    if "latency" not in p:
        return ["skipped (--paced-frames 0)"]
    keys = (
        "variant",
        "camera_fps",
        "frames_offered",
        "frames_processed",
        "drop_pct",
        "deadline_misses",
    )
    head = [
        "variant",
        "camera FPS",
        "offered",
        "processed",
        "drop %",
        "deadline misses",
        "latency p50",
        "output latency p50",
    ]
    row = [p[k] for k in keys] + [p["latency"]["p50_ms"], p["output_latency"]["p50_ms"]]
    return table(head, [row])


def _micro_rows(m: dict[str, Any]) -> list[str]:
    pre, dec, sc, mon = m["preprocess"], m["decode"], m["scene"], m.get("monitor")
    w, h = pre["frame_size"]
    return [
        f"## Micro-benchmarks (ms; {w}x{h} frames, {pre['reps']} reps)",
        "",
        *table(
            ["preprocess", "p50", "p99"],
            [[k, v["p50_ms"], v["p99_ms"]] for k, v in pre["methods"].items()],
        ),
        "",
        f"blobFromImage / serving: {pre['blob_over_serving_p50']:.2f}x; numpy chain / "
        f"serving: {pre['numpy_over_serving_p50']:.2f}x; lens undistortion in the pass / "
        f"plain: {pre['undistort_over_serving_p50']:.2f}x; full-frame cv2.remap + plain / "
        f"undistortion in the pass: {pre['remap_over_undistort_p50']:.2f}x",
        "",
        *table(
            [f"decode / NMS ({dec['candidates']} candidates)", "p50", "p99"],
            [[k, v["p50_ms"], v["p99_ms"]] for k, v in dec["methods"].items()],
        ),
        "",
        f"numpy NMS / serving NMS: {dec['numpy_nms_over_serving_nms_p50']:.2f}x; "
        f"torchvision / serving NMS: {dec['torchvision_over_serving_nms_p50']:.2f}x",
        "",
        *table(
            ["track stage (lane geometry + tracker + warnings)", "tracks", "p50", "p99"],
            [
                [
                    f"{sc['obstacles']} obstacles",
                    sc["tracks_mean"],
                    sc["track_stage"]["p50_ms"],
                    sc["track_stage"]["p99_ms"],
                ]
            ],
        ),
        "",
        *(_monitor_rows(mon) if mon else []),
    ]


def _monitor_rows(mon: dict[str, Any]) -> list[str]:
    parts = (
        ("measure: image properties (loop thread)", "measure"),
        ("update: predictions, windows, state (output side)", "update"),
        ("**per frame**", "frame"),
        ("status: the record's monitor object", "status"),
    )
    return table(
        [f"monitor ({mon['rows']} scored rows, profile {mon['profile'] or 'none'})", "p50", "p99"],
        [[label, mon[k]["p50_ms"], mon[k]["p99_ms"]] for label, k in parts],
    )


def plot(res: dict[str, Any], e2e_samples: dict[str, list[float]], path: Path) -> None:
    """latency.png: stacked per-stage p50 bars per variant, e2e latency CDF per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [v for v in res["variants"] if v["status"] == "ok"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    bottom = np.zeros(len(ok))
    for s in STAGES[1:]:  # decode is ~0 on frames in memory
        vals = np.array([v["stages"][s]["p50_ms"] for v in ok])
        ax1.bar([v["name"] for v in ok], vals, bottom=bottom, label=s)
        bottom += vals
    ax1.axhline(res["model"]["p50_ms"], ls=":", c="k", label="model only p50")
    ax1.set_ylabel("p50 per stage (ms, stacked)")
    ax1.set_title(f"{res['target']['name']}: per-stage p50 (draw, write: output thread)")
    ax1.tick_params(axis="x", labelrotation=20)
    ax1.legend(fontsize="small")
    for name, xs in e2e_samples.items():
        a = np.sort(np.asarray(xs))
        ax2.plot(a, np.arange(1, len(a) + 1) / len(a), label=name)
    ax2.axvline(res["target"]["budget"]["e2e_p50_ms"], ls="--", c="gray", label="p50 budget")
    ax2.set_xlabel("end-to-end latency, frame decoded to result (ms)")
    ax2.set_ylabel("fraction of frames")
    ax2.set_title("e2e latency CDF")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
