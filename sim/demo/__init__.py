"""``foldaccel demo``: the whole project on one config, fold factors side by side.

:func:`sim.demo.run.run_demo` builds, quantizes and exports the model per fold factor, runs
its streaming segments on the Verilated RTL, checks them against the golden model, estimates
the same programs and measures the golden model's SQNR against the float model;
:mod:`sim.demo.report` turns the result into tables, ``report.md``, ``report.json`` and
plots.
"""
