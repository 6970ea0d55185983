"""Write a TensorBoard event log into the folder given: runs alpha-run and beta-run, tag loss,
20 steps each (run with a Python that has tensorboard)."""

import sys

from tensorboard.summary import Writer

for run, scale in (("alpha-run", 1.0), ("beta-run", 2.0)):
    writer = Writer(f"{sys.argv[1]}/{run}")
    for step in range(20):
        writer.add_scalar("loss", scale / (step + 1), step)
    writer.close()
