"""The ``code_interpreter`` tool as each provider declares it, so the model writes
``{"code": ...}`` arguments the adapters stream."""

from __future__ import annotations

NAME = "code_interpreter"
DESCRIPTION = (
    "Run Python in a stateful, sandboxed Jupyter kernel and get its output. Variables, imports "
    "and files persist between calls. The working directory is /mnt/data (uploaded files are "
    "there; save plots and files there to return them). plt.show() returns the plot. No "
    "network access; pandas, numpy, matplotlib, scipy and scikit-learn are installed.")
PARAMETERS = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "Python source to execute."}},
    "required": ["code"],
    "additionalProperties": False,
}


def openai_chat_tool() -> dict:
    return {"type": "function", "function": {"name": NAME, "description": DESCRIPTION,
                                             "parameters": PARAMETERS}}


def openai_responses_tool() -> dict:
    return {"type": "function", "name": NAME, "description": DESCRIPTION,
            "parameters": PARAMETERS, "strict": True}


def anthropic_tool() -> dict:
    return {"name": NAME, "description": DESCRIPTION, "input_schema": PARAMETERS}
