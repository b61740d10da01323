"""Regenerate the sample outputs the README and the docs quote: each command's terminal output, to docs/outputs/.

    python scripts/sample_outputs.py                       # every sample, in a fresh scratch folder
    python scripts/sample_outputs.py --only fit_cartpole_mbppo resume_finished

Each sample is ``docs/outputs/<name>.txt``: the command as typed (``$ python scripts/...``), then what it
printed (standard output and error together, as a terminal shows them, progress as the plain lines a
non-terminal gets). The commands run one after another in one scratch folder with its own MLflow
store, so later samples (``compare``, ``evaluate``, a resume) use the runs of earlier ones; the
scratch folder's path is replaced by ``<workdir>`` in the files, the interpreter's by ``python`` and
the checkout's by nothing (paths relative to it).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = REPO / "docs" / "outputs"
DEMO = ["--experiment_name", "cartpole", "--model.total_frames", "12000", "--model.eval_every_frames", "2000"]

# name -> command; "{dqn_run}" and "{mbppo_run}" are the run ids of the samples that trained them.
SAMPLES: dict[str, list[str]] = {
    "fit_cartpole_mbppo": ["scripts/fit.py", "--config", "conf/cartpole_mbppo.yaml"],
    "resume_finished": ["scripts/fit.py", "--ckpt_path", "runs:/{mbppo_run}"],
    "resume_extended": ["scripts/fit.py", "--ckpt_path", "runs:/{mbppo_run}", "--trainer.callbacks", "[]",
                        "--model.total_frames", "{mbppo_frames_plus_2048}"],
    "fit_cartpole_dqn": ["scripts/fit.py", "--config", "conf/cartpole_dqn.yaml", *DEMO, "--seed_everything", "0"],
    "fit_cartpole_dqn_s1": ["scripts/fit.py", "--config", "conf/cartpole_dqn.yaml", *DEMO, "--seed_everything", "1"],
    "fit_cartpole_ppo": ["scripts/fit.py", "--config", "conf/cartpole_ppo.yaml", *DEMO, "--seed_everything", "0"],
    "fit_cartpole_ppo_s1": ["scripts/fit.py", "--config", "conf/cartpole_ppo.yaml", *DEMO, "--seed_everything", "1"],
    "compare_cartpole": ["scripts/compare.py", "--experiments", "cartpole", "--tags", "env_id=CartPole-v1",
                         "--out", "comparison"],
    "evaluate_best": ["scripts/evaluate.py", "--ckpt_path", "runs:/{dqn_run}", "--best", "--episodes", "10"],
}
_RUN = re.compile(r"MLflow run: (\w+)")
_FRAMES = re.compile(r"Done at frame ([\d,]+)")


def portable(text: str, workdir: Path) -> str:
    """Printed text as a reader's own run would show it: no scratch-folder, checkout or interpreter paths."""
    return text.replace(sys.executable, "python").replace(f"{REPO}/", "").replace(str(workdir), "<workdir>")


def run_sample(name: str, command: list[str], workdir: Path, found: dict[str, str]) -> str:
    """Run one sample in ``workdir``, write its file, and return what it printed."""
    args = [part.format(**found) for part in command]
    shown = "$ " + shlex.join(["python", *args])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([sys.executable, str(REPO / args[0]), *args[1:]], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = portable(result.stdout, workdir)
    (OUTPUTS / f"{name}.txt").write_text(f"{shown}\n{printed}" + ("" if result.returncode == 0 else f"[exit code {result.returncode}]\n"))
    return result.stdout


def main() -> None:
    """Run the chosen samples in order (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SAMPLES), help="these samples (with the ones they need first)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mbrl-samples-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The configs are read by relative path, as the README types them.
    if not (workdir / "conf").exists():
        (workdir / "conf").symlink_to(REPO / "conf")
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    for name, command in SAMPLES.items():
        if args.only and name not in args.only and not any(f"{{{key}" in " ".join(SAMPLES[o]) for o in args.only
                                                               for key in _provides(name)):
            continue
        printed = run_sample(name, command, workdir, found)
        print(f"{OUTPUTS.relative_to(REPO) / (name + '.txt')}", flush=True)
        run = _RUN.search(printed)
        if name == "fit_cartpole_mbppo" and run:
            frames = int(_FRAMES.search(printed).group(1).replace(",", ""))
            found.update(mbppo_run=run.group(1), mbppo_frames_plus_2048=str(frames + 2048))
        if name == "fit_cartpole_dqn" and run:
            found["dqn_run"] = run.group(1)


def _provides(name: str) -> list[str]:
    """The placeholders a sample's run fills in."""
    return {"fit_cartpole_mbppo": ["mbppo_run", "mbppo_frames_plus_2048"], "fit_cartpole_dqn": ["dqn_run"]}.get(name, [])


if __name__ == "__main__":
    main()
