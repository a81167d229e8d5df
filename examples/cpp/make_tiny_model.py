"""Writes a tiny qwen2 model with random F32 weights and a 64-token vocabulary,
for running the C++ example (and anything else) without downloading a model.

    python3 examples/cpp/make_tiny_model.py tiny.gguf
"""
import sys

import gguf
import numpy as np

# head_dim 32: small, and a size the CUDA backend's attention kernels take.
N_LAYERS, N_EMBD, N_HEADS, N_KV_HEADS, N_FF, CONTEXT = 2, 128, 4, 2, 256, 256
HEAD_DIM = N_EMBD // N_HEADS
WORDS = ("the a cat dog sat on mat ran and is red blue big small sun moon sky sea tree bird song day night "
         "star rain snow wind fire stone river hill road").split()
# GPT-2 byte-level spelling: "Ġ" is a space, "Ċ" a newline.
TOKENS = ["<|endoftext|>", "Ġ", "Ċ", ".", ",", "!"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ" + w for w in WORDS]


def main(path: str, seed: int = 0) -> None:
    assert len(TOKENS) == 64
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:  # scaled so activations stay of order one
        return (rng.uniform(-1, 1, (rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1 + 0.1 * rng.uniform(-1, 1, n)).astype(np.float32)

    w = gguf.GGUFWriter(path, "qwen2")
    w.add_name("tiny-qwen2")
    w.add_block_count(N_LAYERS)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEADS)
    w.add_head_count_kv(N_KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(TOKENS)
    w.add_token_types([gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * (len(TOKENS) - 1))
    w.add_eos_token_id(0)
    w.add_tensor("token_embd.weight", rng.uniform(-1, 1, (len(TOKENS), N_EMBD)).astype(np.float32))
    w.add_tensor("output_norm.weight", norm(N_EMBD))
    # An output projection of its own: tied to random embeddings, greedy decoding
    # would only ever repeat the last token.
    w.add_tensor("output.weight", matrix(len(TOKENS), N_EMBD))
    for i in range(N_LAYERS):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm(N_EMBD))
        w.add_tensor(p + "attn_q.weight", matrix(N_HEADS * HEAD_DIM, N_EMBD))
        w.add_tensor(p + "attn_k.weight", matrix(N_KV_HEADS * HEAD_DIM, N_EMBD))
        w.add_tensor(p + "attn_v.weight", matrix(N_KV_HEADS * HEAD_DIM, N_EMBD))
        w.add_tensor(p + "attn_q.bias", matrix(1, N_HEADS * HEAD_DIM)[0])
        w.add_tensor(p + "attn_k.bias", matrix(1, N_KV_HEADS * HEAD_DIM)[0])
        w.add_tensor(p + "attn_v.bias", matrix(1, N_KV_HEADS * HEAD_DIM)[0])
        w.add_tensor(p + "attn_output.weight", matrix(N_EMBD, N_HEADS * HEAD_DIM))
        w.add_tensor(p + "ffn_norm.weight", norm(N_EMBD))
        w.add_tensor(p + "ffn_gate.weight", matrix(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", matrix(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", matrix(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
