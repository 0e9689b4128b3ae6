"""Conversations that grow each turn, as every chat client sends them: time to first token at each
turn with our prompt cache on and off and on llama-server (whose prompt cache is on by default),
then 8 users at once each holding a conversation, our cache on against off. Part of `make bench`;
writes bench/CONVERSATION.md.

Each turn adds a user message of about 220 tokens to the previous turn's prompt and the reply to
it, a fixed text of about 30 tokens (the same for every server, so the conversations are the
same), and asks for 16 greedy tokens.
"""

import argparse
import statistics
import threading
import time
from datetime import date

from bench.load import StreamTiming, one_stream
from bench.rows import OUT
from bench.run import bench_models, machine
from bench.servers import LLAMA_SERVER, ROOT, Server, llama_server, ours

RESULTS = ROOT / "bench" / "CONVERSATION.md"
WORDS = [
    "harbour",
    "lantern",
    "keeper",
    "tide",
    "shore",
    "storm",
    "rope",
    "anchor",
    "gull",
    "reef",
    "beacon",
    "current",
    "signal",
    "compass",
]
REPLY = "I see. Tell me more about what happened next, and I will keep track of the details for you."
MAX_TOKENS = 16


def user_message(user: int, turn: int) -> str:
    """About 220 tokens, different for every user and turn."""
    words = [WORDS[(user * 7 + turn * 3 + i) % len(WORDS)] for i in range(160)]
    return f"User {user}, turn {turn}: " + " ".join(words)


def turn_messages(user: int, turns: int) -> list[list[dict]]:
    """The messages each turn sends: the whole conversation so far."""
    messages: list[dict] = [{"role": "system", "content": "You are a patient listener."}]
    sent = []
    for turn in range(turns):
        messages = [*messages, {"role": "user", "content": user_message(user, turn)}]
        sent.append(messages)
        messages = [*messages, {"role": "assistant", "content": REPLY}]
    return sent


def ask(base_url: str, messages: list[dict]) -> StreamTiming:
    timing = StreamTiming(sent=time.perf_counter())
    body = {"model": "bench", "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    one_stream(f"{base_url}/v1/chat/completions", body, timing, 600)
    return timing


def turn_ttfts(server: Server, turns: int, repeats: int, log_name: str) -> list[float]:
    """Median time to first token (ms) at each turn, over `repeats` conversations of other users."""
    server.start(OUT / log_name)
    try:
        ask(server.base_url, turn_messages(999, 1)[0])  # warm-up
        by_turn = [[ask(server.base_url, m).ttft * 1000 for m in turn_messages(user, turns)] for user in range(repeats)]
    finally:
        server.stop()
    return [statistics.median(times) for times in zip(*by_turn, strict=True)]


def users_at_once(server: Server, users: int, turns: int, log_name: str) -> float:
    """Total tokens per second of `users` clients, each holding a conversation of `turns` turns."""
    server.start(OUT / log_name)
    tokens = [0] * users
    try:
        ask(server.base_url, turn_messages(999, 1)[0])

        def converse(user: int) -> None:
            for messages in turn_messages(100 + user, turns):
                tokens[user] += ask(server.base_url, messages).tokens

        threads = [threading.Thread(target=converse, args=(user,)) for user in range(users)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(tokens) / (time.perf_counter() - start)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--user-turns", type=int, default=6)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    demo = bench_models()[0]
    columns = {
        "ours, cache on": turn_ttfts(
            ours("demo", "--prompt-cache-mb", "1024"), args.turns, args.repeats, "conv-on.log"
        ),
        "ours, cache off": turn_ttfts(ours("demo"), args.turns, args.repeats, "conv-off.log"),
    }
    if LLAMA_SERVER.exists():
        llama = llama_server(demo.gguf, 1, cache_prompt=True, context=8192)
        columns["llama-server (its cache on)"] = turn_ttfts(llama, args.turns, args.repeats, "conv-llama.log")
    on = users_at_once(ours("demo", "--prompt-cache-mb", "1024"), args.users, args.user_turns, "conv-users-on.log")
    off = users_at_once(ours("demo"), args.users, args.user_turns, "conv-users-off.log")
    names = list(columns)
    lines = [
        f"# Conversations, {date.today().isoformat()}",
        "",
        f"Machine: {machine()}. `demo` ({demo.name}); each turn adds about 250 tokens to the conversation "
        f"and asks for {MAX_TOKENS} greedy tokens; medians of {args.repeats} conversations.",
        "",
        "| turn | " + " | ".join(f"{name}, time to first token (ms)" for name in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for turn in range(args.turns):
        lines.append(f"| {turn + 1} | " + " | ".join(f"{columns[name][turn]:.0f}" for name in names) + " |")
    cached = columns["ours, cache on"]
    lines += [
        "",
        f"Cache on: turn {args.turns} took {cached[-1] / cached[0]:.2f}x turn 1's time to first token.",
    ]
    if len(names) == 3:
        llama_last = columns[names[2]][-1]
        lines.append(f"Turn {args.turns}: ours with the cache {cached[-1] / llama_last:.2f}x llama-server's.")
    lines += [
        "",
        f"{args.users} users at once, {args.user_turns} turns each: {on:.1f} tokens/s in total with the cache "
        f"on, {off:.1f} with it off ({on / off:.2f}x).",
        "",
    ]
    print("\n".join(lines))
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
