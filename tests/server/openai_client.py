"""Talks to `verbatim serve` with the official `openai` Python package, the way any OpenAI
client application would, and prints what it got as one JSON object on stdout.

Usage: openai_client.py BASE_URL API_KEY SPEECH_FILE NOT_AUDIO_FILE

Exit codes: 0 all checks passed, 1 a check failed (message on stderr), 77 the `openai`
package is not installed.
"""

import json
import sys

try:
    import openai
except ImportError:
    print("the `openai` Python package is not installed (pip install openai)", file=sys.stderr)
    sys.exit(77)


def check(cond, what):
    if not cond:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    base_url, api_key, speech, not_audio = sys.argv[1:5]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)
    out = {"openai_version": openai.__version__}

    def create(**kw):
        with open(speech, "rb") as f:
            return client.audio.transcriptions.create(model="whisper-1", file=f, **kw)

    # text: a plain string.
    text = create(response_format="text")
    check(isinstance(text, str), f"text response is a str, got {type(text)}")
    out["text"] = text

    # json (the default): a Transcription with .text.
    tr = create()
    check(isinstance(tr, openai.types.audio.Transcription), f"json gives a Transcription, got {type(tr)}")
    out["json_text"] = tr.text

    # verbose_json with word and segment timestamps.
    v = create(response_format="verbose_json", timestamp_granularities=["word", "segment"], language="en")
    check(isinstance(v, openai.types.audio.TranscriptionVerbose), f"verbose_json gives a TranscriptionVerbose, got {type(v)}")
    check(v.words is not None and len(v.words) > 0, "verbose_json has words")
    check(v.segments is not None and len(v.segments) > 0, "verbose_json has segments")
    seg = v.segments[0]
    for field in ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                  "compression_ratio", "no_speech_prob"]:
        check(getattr(seg, field, None) is not None, f"segment field {field}")
    check(all(isinstance(t, int) for t in seg.tokens) and len(seg.tokens) > 0, "segment tokens are ints")
    for w in v.words:
        check(isinstance(w.word, str) and w.end >= w.start, f"word {w}")
    out["verbose"] = v.model_dump()

    # Only word timestamps: words, no segments (as OpenAI answers).
    vw = create(response_format="verbose_json", timestamp_granularities=["word"])
    out["words_only"] = {"words": len(vw.words or []), "segments": vw.segments}

    # Subtitles: strings.
    out["srt"] = create(response_format="srt")
    out["vtt"] = create(response_format="vtt")

    # Translation endpoint.
    with open(speech, "rb") as f:
        t = client.audio.translations.create(model="whisper-1", file=f)
    out["translation"] = t.text

    # The model list.
    models = client.models.list()
    out["models"] = [m.id for m in models.data]

    # A file that is not audio: the client raises BadRequestError with our error fields.
    try:
        with open(not_audio, "rb") as f:
            client.audio.transcriptions.create(model="whisper-1", file=f)
        check(False, "a non-audio upload must fail")
    except openai.BadRequestError as e:
        out["bad_upload"] = {"status": e.status_code, "code": e.code, "param": e.param,
                             "type": e.type, "message": e.message}

    # A wrong key: AuthenticationError (only meaningful when the server wants a key).
    if api_key != "unused":
        wrong = openai.OpenAI(base_url=base_url, api_key=api_key + "x", max_retries=0)
        try:
            wrong.models.list()
            check(False, "a wrong key must fail")
        except openai.AuthenticationError as e:
            out["wrong_key"] = {"status": e.status_code, "code": e.code}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
