"""`idtune serve`: an OpenAI-compatible API and a Gradio web chat on one batching engine.

`server` builds the app and runs it, `api` holds the OpenAI routes, `ui` the web chat, `engine`
the continuous-batching loop they share, `backends` the vLLM / LMDeploy hand-over.
"""
