"""gpu_check.md: the GPU check's report (tools/gpu_check.py) as markdown, from the same record as gpu_check.json."""
from __future__ import annotations


def _code(text: str, lines: int = 40) -> list[str]:
    body = "\n".join(text.rstrip().splitlines()[-lines:]).replace("```", "'''")
    return ["```", body, "```"] if body else []


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4g}" if "." in str(value) or "e" in str(value).lower() else str(value)


def machine_line(report: dict) -> str:
    m = report.get("machine") or {}
    gpu = m.get("gpu") or "no CUDA device"
    if m.get("capability"):
        gpu += f" (sm_{m['capability'].replace('.', '')}, {m.get('gpu_memory_gib')} GiB)"
    parts = [gpu, f"Python {m.get('python')}", f"torch {m.get('torch')} (CUDA {m.get('torch_cuda')})"]
    if m.get("nvcc"):
        parts.append(f"nvcc: {m['nvcc']}")
    if m.get("nvidia_smi"):
        parts.append(f"nvidia-smi: {m['nvidia_smi']}")
    parts.append(f"{m.get('cpus')} CPUs")
    return "; ".join(str(p) for p in parts)


def stage_section(stage: dict) -> list[str]:
    lines = ["", f"## {stage['title']}", "",
             f"**{stage['status']}**" + (f": {stage['summary']}" if stage.get("summary") else "")]
    details = stage.get("details") or {}
    if stage["name"] == "setup":
        if details.get("wheels"):
            lines += ["", f"Wheels ({details.get('wheels_mib')} MiB): " + ", ".join(details["wheels"])]
        req = details.get("requirements") or {}
        for key in ("unmet", "ignored"):
            if req.get(key):
                lines += ["", f"Requirements {key}:", *[f"- {r}" for r in req[key]]]
    elif stage["name"] == "1" and details.get("tests"):
        lines += ["", "| test | outcome | s | measurements |", "|---|---|---:|---|"]
        for t in details["tests"]:
            props = ", ".join(f"{k}={_value(v)}" for k, v in t["properties"].items())
            if t["outcome"] != "passed" and t.get("message"):
                props = (props + "; " if props else "") + t["message"].splitlines()[0][:200]
            lines.append(f"| {t['name']} | {t['outcome']} | {t['seconds']:.1f} | {props.replace('|', '/')} |")
    elif stage["name"] == "2" and details.get("table"):
        if details.get("beside"):
            lines += ["", f"Measured beside {details['beside']}."]
        lines += ["", details["table"].rstrip()]
    elif stage["name"] == "3":
        for key in ("train_metrics", "eval_metrics"):
            metrics = details.get(key) or {}
            shown = {k: v for k, v in metrics.items() if k.startswith(("val/", "train/", "epoch", "global_step"))}
            if shown:
                lines += [
                    "", f"{key.split('_')[0]}: " + ", ".join(f"{k} {_value(v)}" for k, v in sorted(shown.items()))
                ]
    elif stage["name"] == "4":
        b = details.get("build") or {}
        if "prebuilt" in b:
            lines += ["", f"mmcv: already installed (CUDA ops: {b['prebuilt']})"]
        elif b:
            lines += ["", f"mmcv build: exit {b.get('rc')}, {b.get('seconds')} s, {b.get('jobs')} jobs, "
                          f"TORCH_CUDA_ARCH_LIST={b.get('arch')} ({b.get('note')})"]  # fmt: skip
        for name in ("mask_rcnn_demo", "mask_rcnn_demo_fp32", "fpn_demo", "fpn_demo_fp32"):
            run = details.get(name)
            if run:
                metrics = ", ".join(f"{k} {_value(v)}" for k, v in sorted(run["metrics"].items())) or "no metrics"
                loss = f"loss {_value(run['first_loss'])} -> {_value(run['last_loss'])}, " if "last_loss" in run else ""
                lines += ["", f"{name}: {run['run']['seconds']} s, {run.get('iterations')} iterations, {loss}{metrics}"]
    if stage.get("log_tail"):
        lines += ["", "Log (end):", *_code(stage["log_tail"])]
    return lines


def render(report: dict) -> str:
    lines = [
        f"# GPU check{' (dry run)' if report.get('dry_run') else ''}"
        f"{' (rehearsal on the CPU)' if report.get('rehearsal') else ''}: "
        f"{report.get('started')}",
        "",
        f"`{report.get('command')}`: {report.get('elapsed_s')} s of a {report.get('budget_s'):.0f} s budget.",
        "",
        f"Machine: {machine_line(report)}",
        "",
        "| stage | status | s | box s | summary |",
        "|---|---|---:|---:|---|",
    ]
    for s in report.get("stages", []):
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', '-')} | {s.get('box_s', '-')} | "
                     f"{(s.get('summary') or '').replace('|', '/')} |")  # fmt: skip
    for s in report.get("stages", []):
        lines += stage_section(s)
    return "\n".join(lines) + "\n"
