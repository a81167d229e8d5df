"""The tokenizer conformance corpus: strings chosen to exercise every branch of the
pre-tokenizers, the merge loop, byte fallback and special-token parsing."""
from __future__ import annotations


def corpus() -> list[str]:
    cases: list[str] = []
    add = cases.append

    # Empty, whitespace only, runs of spaces, newlines, tabs, CR LF.
    for s in ["", " ", "  ", "   ", "    ", " " * 17, "\t", "\t\t", "\n", "\n\n", "\n\n\n",
              "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \n ", "\t \n \t", "\u000b\u000c",
              "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\r\nb", "a \r\n b",
              "line one\nline two\n", "  leading", "trailing  ", "  both  ", "x\n   \n   y",
              "tabs\t\tand   spaces \t mixed", "end with newline\n", "\n\nstart with newlines"]:
        add(s)

    # Contractions in every case, and apostrophes that are not contractions.
    for s in ["I'm", "I'M", "you're", "YOU'RE", "You'Re", "we've", "WE'VE", "she'll", "SHE'LL",
              "he'd", "HE'D", "it's", "IT'S", "don't", "DON'T", "Don'T", "'s", "'S", "'re",
              "'ll'", "rock 'n' roll", "the '90s", "O'Neil's", "''", "'", "a'b'c'd",
              "It\u2019s curly", "l'homme", "y'all'd've"]:
        add(s)

    # Numbers of every length and shape.
    for n in range(1, 13):
        add("".join(str((i * 7 + 3) % 10) for i in range(n)))
    for s in ["0", "007", "3.14159", "-42", "+1e-10", "1,000,000", "1 000 000", "12:30", "2024-01-31",
              "v1.2.3", "0x1F", "١٢٣٤", "१२३", "½ ⅓ ²", "Ⅻ", "123abc456", "abc123def",
              "99 bottles", "$5.99", "50%", "3rd 4th"]:
        add(s)

    # Code in several languages.
    add("def f(x):\n    return x ** 2\n")
    add("for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}")
    add("#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }")
    add("fn main() {\n    let v: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}")
    add("const f = async (a, b) => { await g(a ?? b); };")
    add("SELECT id, name FROM users WHERE age >= 18 ORDER BY name;")
    add("public static void main(String[] args) throws IOException {}")
    add("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }")
    add("#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done")
    add("    indented four\n        indented eight\n\tindented tab")
    add("x=1;y=2;z=x+y*3//4%5**6")
    add("a!=b&&c||!d>>=e<<=f")
    add("class Foo:\n    \"\"\"Docstring.\"\"\"\n\n    def __init__(self):\n        pass\n")
    add("<?php echo $x; ?>")
    add("matrix = [[1, 2], [3, 4]]  # comment")

    # Structured text.
    add("{\"name\": \"orcd\", \"version\": [0, 1, 2], \"ok\": true, \"none\": null}")
    add("{\n  \"nested\": {\n    \"a\": [1.5, -2e3]\n  }\n}")
    add("<html><head><title>T</title></head><body><p class=\"x\">Hi &amp; bye</p></body></html>")
    add("<div id='main'>\n  <span>text</span>\n</div>")
    add("https://example.com/path/to/page?query=1&other=two#frag")
    add("http://user:pass@host:8080/a_b-c.d~e")
    add("mailto:someone@example.org")
    add("| col1 | col2 |\n|------|------|\n| a    | b    |")
    add("**bold** _italic_ `code` [link](http://x.y)")
    add("key: value\nlist:\n  - one\n  - two")

    # Scripts.
    for s in ["日本語のテキストです。", "中文文本，包括标点符号！", "한국어 텍스트입니다.",
              "Привет, мир! Как дела?", "Ελληνικά γράμματα", "مرحبا بالعالم", "السلام عليكم ورحمة الله",
              "שלום עולם", "עִבְרִית עם ניקוד", "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य",
              "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่าง", "Tiếng Việt có dấu", "Türkçe ğüşıöç İı",
              "Ærøskøbing Ångström", "ñandú pingüino", "Straße groß ẞ", "ქართული ენა", "Հայերեն",
              "አማርኛ", "தமிழ் மொழி", "বাংলা ভাষা", "ꦧꦱꦗꦮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
              "mixed English 和中文 and العربية together"]:
        add(s)

    # Emoji: plain, skin tones, ZWJ sequences, flags, keycaps.
    for s in ["😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🧑🏿‍🚀", "🏳️‍🌈", "🇫🇷🇩🇪🇯🇵", "🇺🇸", "1️⃣ #️⃣",
              "I ❤️ NY", "emoji at end 🎉", "🎉 emoji at start", "❤", "🫠🪿", "☃ ☂ ★"]:
        add(s)

    # Combining marks, NBSP, zero-width and other odd characters.
    for s in ["e\u0301", "cafe\u0301", "café", "n\u0303o\u0308", "a\u0300\u0301\u0302\u0303",
              "\u00a0", "non\u00a0breaking\u00a0space", "narrow\u202fnbsp", "zero\u200bwidth",
              "zwj\u200djoiner", "zwnj\u200cnon", "\ufeffBOM", "soft\u00adhyphen", "em\u2003space",
              "ideographic\u3000space", "line\u2028sep", "para\u2029sep", "\u0085next line",
              "\x00\x01\x02", "bell\x07", "del\x7f", "\ue000private", "\U000f0000plane15",
              "\ufffd replacement", "\u0378 unassigned", "x\u0336y", "Ｆｕｌｌｗｉｄｔｈ", "ﬁ ligature"]:
        add(s)

    # Long words and long repeats.
    add("supercalifragilisticexpialidocious")
    add("pneumonoultramicroscopicsilicovolcanoconiosis")
    add("a" * 100)
    add("ab" * 60)
    add(" " * 100 + "x")
    add("\n" * 50)
    add("=" * 80)
    add("-" * 33 + ">")
    add("9" * 40)
    add("😀" * 30)
    add("あ" * 50)
    add("lo" + "o" * 70 + "ng")
    add("Donaudampfschifffahrtsgesellschaftskapitän")
    add("x" * 257)

    # Special tokens inside text (the default model's control and user-defined tokens).
    for s in ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
              "<|endoftext|>", "text<|endoftext|>text", "<|im_start|><|im_end|>",
              "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "a<tool_call>b",
              "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
              "<|im_start", "|im_end|>", "<|im_start|> spaced <|im_end|> ",
              "<|file_sep|>path/to/file.py\n", "<|repo_name|>orcd", "[PAD151665]",
              "<|endoftext|><|endoftext|>", "<s></s><unk>"]:
        add(s)

    # Ordinary prose.
    for s in ["Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
              "Once upon a time, there was a tokenizer.", "What?! No way... Really?",
              "Mr. Smith paid $1,234.56 on 3/4/2021 at 5:30pm.", "e.g. i.e. etc. vs.",
              "ALL CAPS SENTENCE", "camelCaseIdentifier", "snake_case_identifier",
              "kebab-case-identifier", "PascalCase", "Title Case Words Here",
              "Ünïcödé wörds", "quotes \"double\" and 'single' and «guillemets»",
              "parentheses (nested (deeply)) [brackets] {braces}", "ellipsis… and dash — and –",
              "bullets • one ‣ two", "math: ∑ᵢ xᵢ² ≤ ∞ ± √2 ≠ π", "arrows → ← ↑ ↓ ⇒"]:
        add(s)
    return cases


# Cases tokenized with parse_special=False as well: special tokens become plain text.
def plain_text_cases() -> list[str]:
    return [s for s in corpus() if "<|" in s or "<tool_call>" in s or "<s>" in s]
