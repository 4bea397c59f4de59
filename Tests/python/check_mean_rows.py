"""`ugen export --mean-inactive-rows`: each inactive visual id's lm_head row is the mean of the active
visual rows and every other tensor is as in the plain export; on every position of the first examples
of VAL (the numpy reference forward) no inactive id is the most likely token, and each inactive logit is
at most the largest active visual logit.

Usage: check_mean_rows.py PLAIN_EXPORT_DIR MEAN_EXPORT_DIR VAL_H5. Exit status 0 when all holds."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from export_equals_eval import Export, examples  # noqa: E402

plain, mean = Export(sys.argv[1]), Export(sys.argv[2])
inactive = mean.inactive
active = np.array(mean.sched["active_visual_ids"])
assert len(inactive) > 0 and mean.sched["inactive_head_rows"] == "mean of the active visual rows", mean.sched
head_p, head_m = plain.w["lm_head.weight"], mean.w["lm_head.weight"]
assert np.allclose(head_m[inactive], head_p[active].mean(0), atol=1e-6), "inactive rows are the mean of the active ones"
rest = np.setdiff1d(np.arange(len(head_p)), inactive)
assert np.array_equal(head_m[rest], head_p[rest]), "every other row unchanged"
assert all(np.array_equal(plain.w[k], mean.w[k]) for k in plain.w if k != "lm_head.weight"), "other tensors unchanged"
positions = argmax_inactive = 0
for tokens, _, _ in examples(sys.argv[3])[:12]:
    z = mean.logits(tokens[: mean.cfg["max_position_embeddings"]].astype(np.int64))
    assert (z[:, inactive].max(1) <= z[:, active].max(1) + 1e-9).all(), "an inactive logit above every active visual one"
    argmax_inactive += int(np.isin(z.argmax(1), inactive).sum())
    positions += len(z)
assert argmax_inactive == 0
print(f"ok: {len(inactive)} inactive rows are the mean of {len(active)} active rows; greedy picks no inactive id at {positions} positions")
