"""The official openai client against `phiq serve` (run by tests/serve.rs).

    python openai_client.py BASE_URL MODEL_ID

Each check compares the server with itself across features (whole vs streamed, with and
without a stop string, same vs different seeds), so nothing here is hard-coded text.
"""
import math
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


messages = [{"role": "user", "content": "Alice was beginning to get very tired of sitting"}]

# Chat, whole: greedy, usage counted.
whole = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
text = whole.choices[0].message.content
check(whole.object == "chat.completion" and whole.model == model, whole)
check(whole.choices[0].message.role == "assistant" and text, whole)
check(whole.choices[0].finish_reason in ("length", "stop"), whole)
u = whole.usage
check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 16, u)
check(u.total_tokens == u.prompt_tokens + u.completion_tokens, u)

# The same, streamed: the deltas add up to the same text; usage in the last chunk.
chunks = list(client.chat.completions.create(
    model=model, messages=messages, max_tokens=16, temperature=0,
    stream=True, stream_options={"include_usage": True}))
check(chunks[0].choices[0].delta.role == "assistant", chunks[0])
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(streamed == text, (streamed, text))
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check(finishes == [whole.choices[0].finish_reason], finishes)
check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == u.completion_tokens, chunks[-1])

# Stop string: a word from the middle of the greedy answer ends it there.
words = text.split()
check(len(words) >= 3, text)
stop = " " + words[len(words) // 2]
cut = text[: text.index(stop)]
stopped = client.chat.completions.create(
    model=model, messages=messages, max_tokens=16, temperature=0, stop=[stop])
check(stopped.choices[0].message.content == cut, (stopped.choices[0].message.content, cut))
check(stopped.choices[0].finish_reason == "stop", stopped)
streamed_stop = "".join(
    c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=messages, max_tokens=16, temperature=0, stop=stop, stream=True)
    if c.choices)
check(streamed_stop == cut, (streamed_stop, cut))


# Seeds: sampling at temperature 1 repeats with a seed; different seeds differ.
def sampled(seed):
    r = client.chat.completions.create(
        model=model, messages=messages, max_tokens=24, temperature=1.0, top_p=1.0, seed=seed)
    return r.choices[0].message.content


check(sampled(42) == sampled(42), "the same seed gave different text")
check(len({sampled(s) for s in range(1, 6)}) > 1, "five seeds gave the same text")

# Logprobs: one entry per token; greedy picks the most likely token.
lp = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
content = lp.choices[0].logprobs.content
check(len(content) == lp.usage.completion_tokens, (len(content), lp.usage))
check("".join(t.token for t in content) == lp.choices[0].message.content, content)
for t in content:
    check(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token, t)
    check(t.logprob <= 0 and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6, t)
    check(bytes(t.bytes).decode("utf-8", "replace") == t.token, t)

# Text completions: whole equals streamed.
prompt = "Down, down, down. Would the fall NEVER come to an end!"
c = client.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0)
check(c.object == "text_completion" and c.choices[0].text, c)
s = "".join(x.choices[0].text for x in client.completions.create(
    model=model, prompt=prompt, max_tokens=12, temperature=0, stream=True))
check(s == c.choices[0].text, (s, c.choices[0].text))

# Embeddings (the client asks for base64 and decodes it): unit vectors, equal for equal text.
e = client.embeddings.create(model=model, input=["Alice", "the White Rabbit", "Alice"])
vecs = [d.embedding for d in e.data]
check(len(vecs) == 3 and len(vecs[0]) > 0, e)
for v in vecs:
    check(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4, "not unit length")
check(vecs[0] == vecs[2] and vecs[0] != vecs[1], "embeddings not deterministic or not distinct")
f = client.embeddings.create(model=model, input="Alice", encoding_format="float")
check(max(abs(a - b) for a, b in zip(f.data[0].embedding, vecs[0])) < 1e-6, "float != base64")

# Models, and the client's error classes.
check([m.id for m in client.models.list()] == [model], "models")
# Any model name is served by the loaded model, as llama-server does (clients hard-code
# names such as gpt-4o); `phiq serve --strict-model` answers 404 instead (tests/serve.rs).
r = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=2)
check(r.model == model, r)
try:
    client.chat.completions.create(model=model, messages=messages, temperature=9)
    check(False, "temperature 9 accepted")
except openai.BadRequestError as err:
    check(err.body.get("param") == "temperature" if isinstance(err.body, dict) else False, err.body)

print(f"openai client: all checks passed ({checks} checks)")
