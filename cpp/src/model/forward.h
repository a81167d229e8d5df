// The one forward pass, shared by every architecture and backend.
#pragma once

#include "model/backend.h"
#include "model/weights.h"

namespace orcd {

// Which logits a step computes.
enum class StepLogits {
    None,  // none: an early chunk of a longer prompt
    Last,  // the last token's, left in act.logits (and copied to dst unless it is null)
    All,   // every token's, copied to dst (n * n_vocab floats)
};

// Runs n tokens (n <= shape.max_batch) at positions pos0.. through the model,
// storing their keys and values in the session's cache, then computes the
// logits `which` asks for.
void forward_step(const ModelConfig& config, const ModelWeights& weights, Backend& backend, BackendSession& session,
                  const int32_t* ids, int n, int pos0, StepLogits which, float* dst);

}  // namespace orcd
