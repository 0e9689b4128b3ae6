"""Tool calling in each model family's own format: the tools in the prompt, the calls in the reply.

Nothing here knows HTTP or torch. A `ToolFormat` (glm/tools/formats.py) is chosen once per model
(glm/tools/detect.py); per request it turns a `Conversation` into prompt ids and gives a `Reader`
that splits the reply, as it streams, into text and calls.
"""
