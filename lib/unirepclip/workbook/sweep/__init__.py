"""Sweeps: the notebooks run once per setting, and one page that compares the settings
(:mod:`.spec`, :mod:`.compare`, :mod:`.runner`, :mod:`.parallel`).

``python -m unirepclip run --sweep n_images=200,1000 --sweep seed=0,1`` runs the profile four times
(a grid: every combination of the ``--sweep`` flags; each value a YAML scalar, a notebook-scoped
key such as ``02_zeroshot.n_images`` too), each setting into its own report folder
``<output-dir>/<profile>/<slug>/`` with :func:`unirepclip.workbook.run.run` (so each has its own
lock, provenance and ``--resume``), then writes ``<output-dir>/<profile>/index.html`` and
``sweep.json``: the slug-to-setting table, each setting's headline figures side by side (a table and
a figure), and, where the profile gives a reference, published against measured with the
difference.

A profile can hold the sweep itself (``--sweep`` flags then replace its grid axes of the same key
and add others)::

    sweep:
      only: [02_zeroshot]           # the notebooks each setting runs (default: all; --only wins)
      grid:                         # each key a list of values; the settings are their product
        model_name: [CLIP-UniRepLKNet-L, CLIP-UniRepLKNet-L-320]
        sweep_sizes: [[224], [320]] # a list-valued parameter: each value a list
      cases:                        # and/or settings given one by one (crossed with the grid)
        - {name: cifar10, dataset: cifar10}     # `name` (optional) is the slug's base
        - {name: demo-3x3, model_name: UniRepLKNet-Demo-SmallKernel, model_key: demo_small_kernel}
      compare:                      # the comparison's columns (default: the notebooks' headlines)
        - {key: zeroshot.acc1, label: top-1, fmt: .1%}
      reference:                    # published figures, matched against the settings' values
        label: paper (arXiv 2410.08049, Table 13)
        unit: "%"                   # "%": a published 96.6 is a measured fraction 0.966
        rows:
          - {match: {dataset: cifar10}, key: zeroshot.acc1, metric: top-1, value: 96.6,
             source: "Table 13"}

String values may name a setting's scalar keys as ``{key}`` fields (``data_dir: /data/{dataset}``,
as CLIP_benchmark's ``--dataset_root``). A key both swept and given with ``-p`` is refused.

Every setting is validated before the first one starts (one :class:`ParameterError`, exit status 2):
unknown keys, empty value lists, values of the wrong type or out of range, duplicate settings.
Settings run one after another in this process; ``jobs=N`` runs N at once, each in its own
``python -m unirepclip run`` process (log in ``logs/<slug>.log``), pinned to its own GPU with
``CUDA_VISIBLE_DEVICES`` when its device is CUDA, else given ``num_threads`` = the CPU count / N
(``OMP_NUM_THREADS`` too) unless the sweep or ``-p`` sets ``num_threads``. ``num_threads`` is a
parameter like any other: ``--resume`` with another ``--jobs`` on the CPU reruns the settings.
"""

from unirepclip.workbook.sweep.compare import comparison  # noqa: F401
from unirepclip.workbook.sweep.runner import (  # noqa: F401
    FORMAT, SETTING_STATUSES, SweepResult, run_sweep)
from unirepclip.workbook.sweep.spec import (  # noqa: F401
    SWEEP_KEYS, Setting, SweepSpec, build_spec, parse_sweep_flag, slugify, split_values)
