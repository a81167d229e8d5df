// One transformer step: pre-norm attention and SwiGLU FFN blocks with residual
// adds, then the final norm and the output projection. Architectures differ
// only in the weights they bind (fused or split QKV and gate/up, biases) and in
// their RoPE parameters, never in this code.
#include "model/forward.h"

namespace orcd {
namespace {

void attention_block(const ModelConfig& c, const LayerWeights& L, int layer, Backend& b, BackendSession& s, int n) {
    Activations& a = s.act;
    const int q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
    const int ld = q_dim + 2 * kv_dim;
    b.normed_matmuls(a.x, L.attn_norm, c.rms_eps, n, c.n_embd, a.h, L.qkv_parts, a.qkv, ld);
    b.rope_attention(s, layer, a.qkv, ld, n, a.positions, a.attn);
    b.matmul(L.wo, a.attn, n, a.x, c.n_embd, nullptr, /*accumulate=*/true);
}

void ffn_block(const ModelConfig& c, const LayerWeights& L, Backend& b, BackendSession& s, int n) {
    Activations& a = s.act;
    b.normed_swiglu(a.x, L.ffn_norm, c.rms_eps, n, c.n_embd, a.h, L.gate_up_parts, a.gate_up, c.n_ff, a.ffn);
    b.matmul(L.w_down, a.ffn, n, a.x, c.n_embd, nullptr, /*accumulate=*/true);
}

// Final norm and output projection of `rows` rows of the residual stream starting at `first`.
void logits_rows(const ModelConfig& c, const ModelWeights& w, Backend& b, BackendSession& s, int first, int rows) {
    Activations& a = s.act;
    b.normed_matmuls(a.x + int64_t(first) * c.n_embd, w.output_norm, c.rms_eps, rows, c.n_embd, a.h,
                     {Projection{w.output, {}, 0}}, a.logits, c.n_vocab);
}

}  // namespace

void forward_step(const ModelConfig& c, const ModelWeights& w, Backend& b, BackendSession& s, const int32_t* ids, int n,
                  int pos0, StepLogits which, float* dst) {
    b.set_inputs(s, ids, n, pos0);
    // A step that ends in one row of logits can be recorded and replayed whole.
    const bool replayable = which == StepLogits::Last;
    if (!(replayable && b.begin_step(s, n))) {
        b.embed(w.tok_embd, s.act.ids, n, s.act.x);
        for (int l = 0; l < c.n_layers; ++l) {
            attention_block(c, w.layers[l], l, b, s, n);
            ffn_block(c, w.layers[l], b, s, n);
        }
        if (which == StepLogits::Last) logits_rows(c, w, b, s, n - 1, 1);
        if (replayable) b.end_step(s, n);
    }
    if (which == StepLogits::Last && dst) b.download(s.act.logits, size_t(c.n_vocab), dst);
    if (which != StepLogits::All) return;
    for (int first = 0; first < n; first += s.shape.logit_rows) {
        int rows = std::min(s.shape.logit_rows, n - first);
        logits_rows(c, w, b, s, first, rows);
        b.download(s.act.logits, size_t(rows) * c.n_vocab, dst + size_t(first) * c.n_vocab);
    }
}

}  // namespace orcd
