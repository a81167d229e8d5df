"""Write the reference token ids of the conformance corpus, as llama.cpp tokenizes them.

    python tests_py/tools/make_tokenizer_reference.py MODEL.gguf [OUT.json]

Needs llama-cpp-python (built with CMAKE_ARGS="-DGGML_NATIVE=OFF" on CPUs where the
native build crashes). The output is committed so the tests need neither.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_corpus import corpus, plain_text_cases  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer_reference_qwen2.json")


def llama_cpp_ids(llm, text: str, parse_special: bool) -> list[int]:
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=parse_special))


def main() -> None:
    model = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    cases = [{"text": t, "parse_special": True, "ids": llama_cpp_ids(llm, t, True)} for t in corpus()]
    cases += [{"text": t, "parse_special": False, "ids": llama_cpp_ids(llm, t, False)}
              for t in plain_text_cases()]
    doc = {
        "model": os.path.basename(model),
        "model_bytes": os.path.getsize(model),
        "reference": f"llama-cpp-python {llama_cpp.__version__}, Llama.tokenize(add_bos=False)",
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
