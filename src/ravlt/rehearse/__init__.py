"""Dress rehearsal of the paper's 25 runs: each shipped config, unchanged but for what the CPU forces, for a few
steps on the CPU — train from a released-layout checkpoint, write a checkpoint, resume, evaluate
(``python -m ravlt.rehearse --help``; ``make rehearse``)."""
