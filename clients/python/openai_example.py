"""The official `openai` client, unchanged, pointed at a ChatGLM service's /v1 API.

    python openai_example.py --url http://127.0.0.1:8800/v1 --temperature 0 "你好"

The reply goes to stdout exactly as UTF-8, piece by piece as it arrives; the finish line goes to stderr.
"""

import argparse
import sys

import openai


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("query")
    parser.add_argument("--url", default="http://127.0.0.1:8800/v1")
    parser.add_argument("--temperature", type=float, help="0 for greedy decoding")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--ignore-eos", action="store_true", help="keep generating through end-of-sequence tokens")
    args = parser.parse_args()

    # The service checks no key, but the client insists on one.
    client = openai.OpenAI(base_url=args.url, api_key="unused", timeout=60, max_retries=0)
    try:
        stream = client.chat.completions.create(
            model="chatglm",
            messages=[{"role": "user", "content": args.query}],
            stream=True,
            stream_options={"include_usage": True},
            temperature=args.temperature if args.temperature is not None else openai.NOT_GIVEN,
            max_tokens=args.max_tokens or openai.NOT_GIVEN,
            # Not an OpenAI parameter: extra_body passes it through as it is.
            extra_body={"ignore_eos": True} if args.ignore_eos else None,
        )
        for chunk in stream:
            for choice in chunk.choices:
                sys.stdout.buffer.write((choice.delta.content or "").encode("utf-8"))
                sys.stdout.buffer.flush()
                if choice.finish_reason:
                    print(f"\n[finish_reason: {choice.finish_reason}]", file=sys.stderr)
            if chunk.usage:
                print(f"[usage: {chunk.usage.model_dump()}]", file=sys.stderr)
    except openai.APIError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
