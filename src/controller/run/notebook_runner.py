# Runs a Jupyter notebook's code cells in order, in one Python process, the way a
# script runs: one namespace, the notebook's folder as the working directory.
# Flotilla passes it to `python -c` in the run container (src/controller/run/notebook.rs).
#
# - Each code cell may be tried again: FLOTILLA_NOTEBOOK_CELLS is a JSON list, by
#   code-cell index, of {"retries": N, "delay": seconds}; a cell's own metadata
#   ("flotilla" or Fast-Flow's "fastflow": {"retries", "delay_seconds"}) overrides it.
# - A cell whose last statement is an expression prints its value, as Jupyter shows it.
# - IPython magics and shell escapes (lines starting with % or !) need a Jupyter kernel;
#   they are skipped with a note.
# - Progress goes to stdout ("cell 2: start", "cell 2: done"); a cell that fails for
#   good ends the run with exit code 1 and, on stderr, one line starting with
#   "flotilla-notebook: cell " that the operator copies into the run's reason.
import ast
import json
import os
import sys
import time
import traceback

MARK = "flotilla-notebook:"


def cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def without_magics(index, text):
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("%", "!")):
            print(f"cell {index}: line {number} skipped (IPython magic or shell escape: {line.strip()[:60]})", flush=True)
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept)


def run_cell(index, text, namespace):
    tree = ast.parse(text, filename=f"<cell {index}>")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, f"<cell {index}>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, f"<cell {index}>", "eval"), namespace)
        if value is not None:
            print(repr(value), flush=True)


def print_cell_traceback(error):
    """The traceback from the cell's own frames on (not this runner's)."""
    frames = error.__traceback__
    while frames is not None and not frames.tb_frame.f_code.co_filename.startswith("<cell"):
        frames = frames.tb_next
    traceback.print_exception(type(error), error, frames or error.__traceback__)
    sys.stderr.flush()


def policy(index, cells, metadata):
    base = cells[index] if index < len(cells) and isinstance(cells[index], dict) else {}
    own = metadata.get("flotilla") or metadata.get("fastflow") or {}
    retries = int(own.get("retries", base.get("retries", 0)))
    delay = float(own.get("delay_seconds", own.get("delay", base.get("delay", 1))))
    return max(retries, 0), max(delay, 0.0)


def main(path):
    with open(path, encoding="utf-8") as handle:
        notebook = json.load(handle)
    cells = json.loads(os.environ.get("FLOTILLA_NOTEBOOK_CELLS") or "[]")
    os.chdir(os.path.dirname(os.path.abspath(path)))
    namespace = {"__name__": "__main__", "__file__": os.path.abspath(path)}
    code = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    for index, cell in enumerate(code):
        retries, delay = policy(index, cells, cell.get("metadata") or {})
        print(f"cell {index}: start", flush=True)
        text = without_magics(index, cell_source(cell))
        for attempt in range(1, retries + 2):
            try:
                run_cell(index, text, namespace)
                break
            except Exception as error:  # a cell's failure, told and maybe retried
                print_cell_traceback(error)
                what = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
                if attempt > retries:
                    tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                    print(f"{MARK} cell {index} failed after {tries}: {what}", file=sys.stderr, flush=True)
                    return 1
                print(f"cell {index}: attempt {attempt} of {retries + 1} failed ({what}); again in {delay:g}s", flush=True)
                time.sleep(delay)
        print(f"cell {index}: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
