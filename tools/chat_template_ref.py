#!/usr/bin/env python3
"""Expected chat-template renderings for tests/fixtures/chat_templates.json.

Renders the fixture templates exactly as transformers' `apply_chat_template` does
(transformers/utils/chat_template_utils.py, `_compile_jinja_template` and
`render_jinja_template`): jinja2's ImmutableSandboxedEnvironment with trim_blocks=True,
lstrip_blocks=True and the loopcontrols extension; a `tojson` filter that is
json.dumps(ensure_ascii=False); a `raise_exception` global; rendered with messages,
tools=None, documents=None, add_generation_prompt and the special-token strings.
transformers itself is not needed (it would pull in torch); only jinja2.

Usage (regenerates the fixture; needs only `pip install jinja2`):
    python3 -m venv target/chatref && target/chatref/bin/pip install jinja2
    target/chatref/bin/python tools/chat_template_ref.py ../shared/fixtures \
        > tests/fixtures/chat_templates.json
The Phi-3 GGUF's own template is read from ggml-vocab-phi-3.gguf with a minimal GGUF
reader below (no gguf-py needed).
"""

import json
import struct
import sys
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def compile_template(source):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def gguf_string(path, wanted):
    """The string value of metadata key `wanted` in a GGUF v2/v3 file."""
    data = Path(path).read_bytes()
    pos = 4 + 4  # magic, version
    _n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def read_str(pos):
        (n,) = struct.unpack_from("<Q", data, pos)
        return data[pos + 8 : pos + 8 + n].decode("utf-8"), pos + 8 + n

    def skip(ty, pos):
        if ty == 8:
            return read_str(pos)[1]
        if ty == 9:
            elem, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                pos = skip(elem, pos)
            return pos
        return pos + sizes[ty]

    for _ in range(n_kv):
        key, pos = read_str(pos)
        (ty,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == wanted and ty == 8:
            return read_str(pos)[0]
        pos = skip(ty, pos)
    raise KeyError(wanted)


PHI4_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|dummy_85|>"}
PHI3_SPECIALS = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}

CHATS = [
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  spaces  \n\nand\tnewlines\n"}],
    [{"role": "user", "content": "Unicode: 日本語 😀 é \"quotes\" <b>tags</b> {{ not a template }}"}],
    [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "ignored by some templates"}],
    [],
]


def main():
    fixtures = Path(sys.argv[1])
    templates = [
        ("microsoft-phi-4.jinja", (fixtures / "templates/microsoft-phi-4.jinja").read_text(encoding="utf-8"), PHI4_SPECIALS),
        ("microsoft-Phi-3.5-mini-instruct.jinja", (fixtures / "templates/microsoft-Phi-3.5-mini-instruct.jinja").read_text(encoding="utf-8"), PHI3_SPECIALS),
        ("phi-3-gguf", gguf_string(fixtures / "vocab/ggml-vocab-phi-3.gguf", "tokenizer.chat_template"), PHI3_SPECIALS),
    ]
    cases = []
    for name, source, specials in templates:
        template = compile_template(source)
        for messages in CHATS:
            for gen in (True, False):
                case = {"template": name, "messages": messages, "add_generation_prompt": gen, "special_tokens": specials}
                try:
                    case["expected"] = template.render(messages=messages, tools=None, documents=None, add_generation_prompt=gen, **specials)
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    # A template that refuses its input, and Python-isms HF templates use.
    extra = [
        ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('first message must be system') }}{% endif %}ok", CHATS[1]),
        ("{% for m in messages %}{{ m['content'].strip() | upper }}|{{ m['role'].startswith('u') }}|{{ loop.last }}|{% if loop.index > 1 %}{% break %}{% endif %}{% endfor %}{{ messages | tojson }}{{ none }}", CHATS[2]),
        ("{%- for m in messages %}\n  {%- if m.role == 'user' %}\n    [{{ m.content | trim }}]\n  {% endif %}\n{% endfor %}\n", CHATS[1]),
    ]
    for source, messages in extra:
        template = compile_template(source)
        case = {"template_source": source, "template": "inline", "messages": messages, "add_generation_prompt": False, "special_tokens": {}}
        try:
            case["expected"] = template.render(messages=messages, tools=None, documents=None, add_generation_prompt=False)
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
        cases.append(case)
    json.dump({"made_by": "tools/chat_template_ref.py (jinja2 " + jinja2.__version__ + ", transformers' settings)", "cases": cases}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
