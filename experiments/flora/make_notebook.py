"""Build ``notebooks/results_flora.ipynb`` (outputs cleared): ``python experiments/flora/make_notebook.py``."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]

cells = [
    new_markdown_cell(
        "# FLoRA against LoRA on a frozen digits CNN: committed results\n\n"
        "Redraws the plot of `experiments/flora/results/results.json` (written by "
        "`python -m experiments run flora --out experiments/flora/results`). No JAX work: it only reads the JSON."
    ),
    new_code_cell(
        "import json\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n\n"
        "root = Path.cwd()\n"
        "while not (root / 'pyproject.toml').exists() and root != root.parent:\n"
        "    root = root.parent\n"
        "record = json.loads((root / 'experiments' / 'flora' / 'results' / 'results.json').read_text())\n"
        "res = record['results']\n"
        "print(record['command'], '|', record['size'], '|', record['wall_time_s'], 's')\n"
        "print(record['headline'])\n"
        "for check, ok in record['checks'].items():\n"
        "    print('PASS' if ok else 'FAIL', check)"
    ),
    new_code_cell(
        "def label(r):\n"
        "    return {'head': 'linear probe', 'full': 'full fine-tuning'}.get(r['method'], f\"{r['method']} r={r['rank']}\")\n\n"
        "print(f\"pretrained test accuracy {res['pretrain']['test_acc']:.3f}; chance on the new task {res['chance']:.2f}\")\n"
        "print(f\"{'method':18s} {'trainable':>9s} {'adapter':>8s} {'lr':>7s} {'test acc':>16s}\")\n"
        "for r in res['settings']:\n"
        "    print(f\"{label(r):18s} {r['trainable_params']:9d} {r['adapter_params']:8d} {r['best_lr']:7g} \"\n"
        "          f\"{r['test_acc']:.3f} +- {r['test_acc_std']:.3f}\")\n"
        "print()\n"
        "for m in res['matched']:\n"
        "    print(f\"LoRA r={m['lora_rank']} ({m['lora_params']} params) {m['lora_acc']:.3f}  vs  \"\n"
        "          f\"FLoRA r={m['tucker_rank']} ({m['tucker_params']} params) {m['tucker_acc']:.3f}\")"
    ),
    new_code_cell(
        "fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))\n"
        "rows = res['settings']\n"
        "for method, style, name in (('tucker', 'o-', 'FLoRA (Tucker, kernel modes)'), ('lora', 's-', 'LoRA (matrix view)')):\n"
        "    pts = sorted((r for r in rows if r['method'] == method), key=lambda r: r['trainable_params'])\n"
        "    ax.errorbar([r['trainable_params'] for r in pts], [r['test_acc'] for r in pts],\n"
        "                yerr=[r['test_acc_std'] for r in pts], fmt=style, capsize=3, label=name)\n"
        "for method, style in (('head', 'k^'), ('full', 'kD')):\n"
        "    for r in rows:\n"
        "        if r['method'] == method:\n"
        "            ax.errorbar([r['trainable_params']], [r['test_acc']], yerr=[r['test_acc_std']], fmt=style,\n"
        "                        capsize=3, label=label(r))\n"
        "ax.axhline(res['chance'], color='grey', lw=0.8, ls=':', label='chance')\n"
        "ax.set_xscale('log'); ax.set_xlabel('trainable parameters (adapters + head)'); ax.set_ylabel('test accuracy')\n"
        "ax.legend(fontsize=8); ax.grid(alpha=0.3)\n"
        "for r in rows:\n"
        "    bx.plot(r['loss_curve'], label=label(r), lw=1)\n"
        "bx.set_yscale('log'); bx.set_xlabel('training progress (windows)'); bx.set_ylabel('training loss')\n"
        "bx.legend(fontsize=6, ncol=2); bx.grid(alpha=0.3)\n"
        "fig.tight_layout()\n"
        "plt.show()"
    ),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}})
nbformat.write(nb, ROOT / "notebooks" / "results_flora.ipynb")
print("wrote", ROOT / "notebooks" / "results_flora.ipynb")
