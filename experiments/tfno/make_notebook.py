"""Write ``notebooks/results_tfno.ipynb`` (outputs cleared): run ``python experiments/tfno/make_notebook.py``."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]

cells = [
    new_markdown_cell(
        "# Tensorized FNO on 1-D Burgers: committed results\n\n"
        "Redraws the tables and plots of `experiments/tfno/results/results.json` (written by "
        "`python -m experiments run tfno --out experiments/tfno/results`). No JAX work here; see "
        "`experiments/tfno/README.md` for the setting and the comparison with Kossaifi et al. (TMLR 2023)."
    ),
    new_code_cell(
        "import json\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "root = Path.cwd()\n"
        "while not (root / 'pyproject.toml').exists() and root != root.parent:\n"
        "    root = root.parent\n"
        "record = json.loads((root / 'experiments' / 'tfno' / 'results' / 'results.json').read_text())\n"
        "res, cfg = record['results'], record['config']\n"
        "print(record['command'], '|', record['size'], '|', record['wall_time_s'], 's')\n"
        "print(record['headline'])"
    ),
    new_code_cell(
        "dense = res['variants'][0]\n"
        "print(f\"{'spectral weight':>16} {'params':>8} {'compr.':>7} {'spectral compr.':>16} {'test rel L2':>12} "
        "{'x dense':>8}\")\n"
        "for v in res['variants']:\n"
        "    print(f\"{v['label']:>16} {v['params_total']:>8} {v['compression_total']:>6.1f}x \"\n"
        "          f\"{v['compression_spectral']:>15.1f}x {v['test_error']:>12.4f} {v['error_ratio_to_dense']:>8.2f}\")\n"
        "print('baselines:', {k: round(v, 3) for k, v in res['baselines'].items()})\n"
        "print('solver:', {k: res['data'][k] for k in ('solver_steps', 'mean_drift_relative', 'finite')})"
    ),
    new_code_cell(
        "fig, ax = plt.subplots(figsize=(6.2, 4.2))\n"
        "for kind, marker in (('dense', 's'), ('tucker', 'o'), ('cp', '^')):\n"
        "    vs = sorted((v for v in res['variants'] if v['kind'] == kind), key=lambda v: v['params_total'])\n"
        "    if vs:\n"
        "        ax.plot([v['params_total'] for v in vs], [v['test_error'] for v in vs], marker=marker, label=kind)\n"
        "for name, ls in (('zero', ':'), ('identity', '--'), ('heat', '-.')):\n"
        "    ax.axhline(res['baselines'][name], color='gray', ls=ls, lw=1, label=f'{name} predictor')\n"
        "ax.set(xscale='log', yscale='log', xlabel='parameters', ylabel='test relative L2 error')\n"
        "ax.legend(fontsize=7)\n"
        "ax.grid(alpha=0.3, which='both')"
    ),
    new_code_cell(
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))\n"
        "for v in res['variants']:\n"
        "    axes[0].plot(v['train_loss'], label=v['label'], lw=1)\n"
        "    axes[1].plot(v['test_error_curve'], label=v['label'], lw=1)\n"
        "for a, t in zip(axes, ('training loss', 'test rel. L2 error')):\n"
        "    a.set(yscale='log', xlabel='epoch', title=t)\n"
        "axes[1].legend(fontsize=7);"
    ),
]
nb = new_notebook(
    cells=cells,
    metadata={
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
    },
)
nbformat.write(nb, ROOT / "notebooks" / "results_tfno.ipynb")
print("wrote", ROOT / "notebooks" / "results_tfno.ipynb")
