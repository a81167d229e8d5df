// The one forward pass, shared by every architecture and backend.
#pragma once

#include "model/backend.h"
#include "model/weights.h"

namespace orcd {

// Runs n tokens (n <= shape.max_batch) at positions pos0.. through the model,
// storing their keys and values in the session's cache. Writes the logits of
// the last token to dst (n_vocab floats) or, with all_rows, of every token
// (n * n_vocab floats). With dst null and !all_rows, the last token's logits
// stay in the backend's memory (session.act.logits) for a device-side choice.
void forward_step(const ModelConfig& config, const ModelWeights& weights, Backend& backend, BackendSession& session,
                  const int32_t* ids, int n, int pos0, bool all_rows, float* dst);

}  // namespace orcd
