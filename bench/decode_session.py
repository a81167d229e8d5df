"""The starting point the decode profilers share: a session that has prefilled
`context` random prompt tokens and taken `warmup` greedy steps, with room left
for `steps` more."""
import numpy as np

import orcd


def warm_greedy_session(path: str, context: int, steps: int, warmup: int, device: str = "cuda"):
    """Returns (session, last token id)."""
    model = orcd.Model(path, device=device)
    session = model.session(max_context=context + warmup + steps)
    prompt = np.random.default_rng(0).integers(0, model.config.n_vocab, context).astype(np.int32)
    token = session.prefill_greedy(prompt)
    for _ in range(warmup):
        token = session.decode_greedy(token)
    return session, token
