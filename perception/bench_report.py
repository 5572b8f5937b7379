"""Verdicts, the Markdown report and the latency chart of `perception bench`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench_run import STAGES
from serving.files import atomic_write_bytes

PRE_VS_BLOB = 1.5  # serving preprocessing at least this many times faster than blobFromImage
LOOP_VS_NAIVE = 1.3  # loop FPS at least this many times the naive loop's
P99_OVER_P50 = 1.5  # p99 at most this many times p50
OVERHEAD_PCT = 10.0  # e2e p50 - model p50, at most this % of model p50


def _v(check: str, value: float | None, limit: float, ok: bool | None, detail: str) -> dict:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return {"check": check, "status": status, "value": value, "limit": limit, "detail": detail}


def _variant(res: dict[str, Any], name: str) -> dict[str, Any] | None:
    v = next((v for v in res["variants"] if v["name"] == name), None)
    return v if v is not None and v["status"] == "ok" else None


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The profile's budget and the project bars (DESIGN.md, Performance budgets)."""
    b = res["target"]["budget"]
    p50, p99, fps = res["e2e"]["p50_ms"], res["e2e"]["p99_ms"], res["fps"]
    out = [
        _v("e2e p50 <= budget (ms)", p50, b["e2e_p50_ms"], p50 <= b["e2e_p50_ms"], f"{p50:.2f} ms"),
        _v("e2e p99 <= budget (ms)", p99, b["e2e_p99_ms"], p99 <= b["e2e_p99_ms"], f"{p99:.2f} ms"),
        _v("FPS >= min_fps", fps, b["min_fps"], fps >= b["min_fps"], f"{fps:.1f} FPS"),
    ]
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
    naive, main = _variant(res, "naive"), _variant(res, res["main_variant"])
    check = f"loop FPS >= {LOOP_VS_NAIVE}x naive loop FPS"
    if naive and main and naive["fps"]:
        r = main["fps"] / naive["fps"]
        detail = f"{main['fps']:.1f} vs {naive['fps']:.1f} FPS ({r:.2f}x)"
        out.append(_v(check, r, LOOP_VS_NAIVE, r >= LOOP_VS_NAIVE, detail))
    else:
        out.append(_v(check, None, LOOP_VS_NAIVE, None, "naive loop not run"))
    out.append(_int8(res))
    out.append(
        _v(
            f"e2e p99 <= {P99_OVER_P50}x p50",
            p99 / p50,
            P99_OVER_P50,
            p99 <= P99_OVER_P50 * p50,
            f"{p99 / p50:.2f}x",
        )
    )
    o = res["overhead"]
    out.append(
        _v(
            f"overhead (e2e p50 - model p50) <= {OVERHEAD_PCT:g} % of model p50",
            o["pct_of_model_p50"],
            OVERHEAD_PCT,
            o["pct_of_model_p50"] <= OVERHEAD_PCT,
            f"{o['ms']:.2f} ms = {o['pct_of_model_p50']:.1f} %",
        )
    )
    return out


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


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]


def markdown(res: dict[str, Any]) -> str:
    """bench.md: fingerprint, stages, variants with accuracy, micro-benchmarks, verdicts."""
    fp, t, fr = res["fingerprint"], res["target"], res["frames"]
    lines = [
        f"# Benchmark: {t['name']} ({t['path']})",
        "",
        f"{t['description']}. Main variant **{res['main_variant']}** on "
        f"{', '.join(res['providers_used'])}; {fr['timed']} timed frames "
        f"({fr['distinct']} distinct, {fr['width']}x{fr['height']}, test split), "
        f"{fr['warmup']} warm-up frames excluded.",
        "",
        "## Machine",
        "",
        *_table(
            ["cpu", "cores (logical/affinity)", "gpu", "onnxruntime", "numba (layer)", "opencv"],
            [
                [
                    fp["cpu"],
                    f"{fp['cores']['logical']}/{fp['cores']['affinity']}",
                    fp["gpu"]["name"] or "none",
                    fp["versions"]["onnxruntime"],
                    f"{fp['versions']['numba']} ({fp['numba_threading']['layer']})",
                    fp["versions"]["opencv"],
                ]
            ],
        ),
        "",
        "## Cold start (s)",
        "",
        *_table(list(res["cold_start"]), [list(res["cold_start"].values())]),
        "",
        "## Loop stages (ms)",
        "",
        *_stage_rows(res),
        "",
        f"Throughput {res['fps']:.1f} FPS (frames / wall time). Overhead e2e - model at p50: "
        f"{res['overhead']['ms']:.2f} ms ({res['overhead']['pct_of_model_p50']:.1f} %).",
        "",
        "## Variants (same frames, interleaved)",
        "",
        *_variant_rows(res),
        "",
        *_micro_rows(res["micro"]),
        "",
        "## Paced run",
        "",
        *_paced_rows(res["paced"]),
        "",
        "## Verdicts",
        "",
        *_table(
            ["check", "result", "value"],
            [[v["check"], v["status"], v["detail"]] for v in res["verdicts"]],
        ),
    ]
    return "\n".join(lines) + "\n"


def _paced_rows(p: dict[str, Any]) -> list[str]:
    if "latency" not in p:
        return ["skipped (--paced-frames 0)"]
    keys = ("camera_fps", "frames_offered", "frames_processed", "drop_pct", "deadline_misses")
    head = ["camera FPS", "offered", "processed", "drop %", "deadline misses", "latency p50"]
    return _table(head, [[p[k] for k in keys] + [p["latency"]["p50_ms"]]])


def _stage_rows(res: dict[str, Any]) -> list[str]:
    keys = ["p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "cv"]
    rows = [[s] + [res["stages"][s][k] for k in keys] for s in STAGES]
    rows.append(["model only"] + [res["model"][k] for k in keys])
    rows.append(["**e2e**"] + [res["e2e"][k] for k in keys])
    return _table(["stage", "p50", "p90", "p99", "max", "mean", "cv"], rows)


def _variant_rows(res: dict[str, Any]) -> list[str]:
    rows = []
    for v in res["variants"]:
        if v["status"] != "ok":
            rows.append(
                [v["name"], v["status"], "", "", "", "", "", v["lane_accuracy"], v["map50"]]
            )
            continue
        e, s = v["e2e"], v["stages"]
        rows.append(
            [
                v["name"],
                "ok",
                e["p50_ms"],
                e["p99_ms"],
                v["fps"],
                s["pre"]["p50_ms"],
                s["infer"]["p50_ms"],
                v["lane_accuracy"],
                v["map50"],
            ]
        )
    head = [
        "variant",
        "status",
        "e2e p50",
        "e2e p99",
        "FPS",
        "pre p50",
        "infer p50",
        "lane acc",
        "mAP50",
    ]
    return _table(head, rows)


def _micro_rows(m: dict[str, Any]) -> list[str]:
    pre, dec = m["preprocess"], m["decode"]
    w, h = pre["frame_size"]
    out = [f"## Micro-benchmarks (ms; {w}x{h} frames, {pre['reps']} reps)", ""]
    out += _table(
        ["preprocess", "p50", "p99"],
        [[k, v["p50_ms"], v["p99_ms"]] for k, v in pre["methods"].items()],
    )
    out += [
        "",
        f"blobFromImage / serving: {pre['blob_over_serving_p50']:.2f}x; numpy chain / "
        f"serving: {pre['numpy_over_serving_p50']:.2f}x",
    ]
    if "undistort_over_serving_p50" in pre:  # results written before lens undistortion
        out += [
            "",
            f"lens undistortion in the pass / plain: {pre['undistort_over_serving_p50']:.2f}x; "
            f"full-frame cv2.remap + plain / undistortion in the pass: "
            f"{pre['remap_over_undistort_p50']:.2f}x",
        ]
    out += [""]
    out += _table(
        [f"decode / NMS ({dec['candidates']} candidates)", "p50", "p99"],
        [[k, v["p50_ms"], v["p99_ms"]] for k, v in dec["methods"].items()],
    )
    out += [
        "",
        f"numpy NMS / serving NMS: {dec['numpy_nms_over_serving_nms_p50']:.2f}x; "
        f"torchvision / serving NMS: {dec['torchvision_over_serving_nms_p50']:.2f}x",
    ]
    return out


def plot(res: dict[str, Any], e2e_samples: dict[str, list[float]], path: Path) -> None:
    """latency.png: stacked per-stage p50 bars per variant, e2e latency CDF per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [v for v in res["variants"] if v["status"] == "ok"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = np.zeros(len(ok))
    for s in STAGES:
        vals = np.array([v["stages"][s]["p50_ms"] for v in ok])
        ax1.bar([v["name"] for v in ok], vals, bottom=bottom, label=s)
        bottom += vals
    ax1.set_ylabel("p50 per stage (ms, stacked)")
    ax1.set_title(f"{res['target']['name']}: per-stage p50")
    ax1.legend()
    for name, xs in e2e_samples.items():
        a = np.sort(np.asarray(xs))
        ax2.plot(a, np.arange(1, len(a) + 1) / len(a), label=name)
    ax2.axvline(res["target"]["budget"]["e2e_p50_ms"], ls="--", c="gray", label="p50 budget")
    ax2.set_xlabel("end-to-end latency (ms)")
    ax2.set_ylabel("fraction of frames")
    ax2.set_title("e2e latency CDF")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
