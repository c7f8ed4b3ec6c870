"""An MCP server written with the official SDK (its low-level ``Server``), run over stdio as a subprocess by the
MCP client tests. Its tools cover every kind of result and every way a server misbehaves: an image, structured
content, an error result, a crash mid-call, a hang, an oversized result, an invalid input schema and a name we
cannot use. ``calls`` counts the tools/call requests it received, so a test can tell what reached the server.
"""

from __future__ import annotations

import asyncio
import base64
import os

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n image bytes").decode()  # the client passes image data on unread

OBJ: dict = {"type": "object", "properties": {}}
TOOLS = [
    types.Tool(name="add", description="Add two integers.",
               input_schema={"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]},
               annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(name="pixel", description="An image with a caption.", input_schema=OBJ),
    types.Tool(name="weather", description="Structured weather.", input_schema=OBJ),
    types.Tool(name="fail", description="Always fails.", input_schema=OBJ),
    types.Tool(name="crash", description="Exits the server mid-call.", input_schema=OBJ),
    types.Tool(name="hang", description="Never answers.", input_schema=OBJ),
    types.Tool(name="big", description="n bytes of text.",
               input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    types.Tool(name="pid", description="The server's process id.", input_schema=OBJ),
    types.Tool(name="calls", description="How many tools/call requests arrived.", input_schema=OBJ),
    types.Tool(name="broken", description="An input schema that is not JSON Schema.",
               input_schema={"type": "object", "properties": {"x": {"type": "nonsense"}}}),
    types.Tool(name="bad name!", description="A name our tools cannot have.", input_schema=OBJ),
]
count = 0


def text(s: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=s)])


async def list_tools(ctx, params) -> types.ListToolsResult:  # type: ignore[no-untyped-def]
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx, params) -> types.CallToolResult:  # type: ignore[no-untyped-def]
    global count
    count += 1
    args = params.arguments or {}
    name = params.name
    if name == "add":
        return text(str(args["a"] + args["b"]))
    if name == "pixel":
        return types.CallToolResult(content=[types.TextContent(text="one red pixel"),
                                             types.ImageContent(data=PIXEL, mime_type="image/png")])
    if name == "weather":
        return types.CallToolResult(content=[], structured_content={"city": "Paris", "temp_c": 21})
    if name == "fail":
        return types.CallToolResult(content=[types.TextContent(text="the disk is full")], is_error=True)
    if name == "crash":
        os._exit(3)
    if name == "hang":
        await asyncio.sleep(3600)
    if name == "big":
        return text("x" * int(args["n"]))
    if name == "pid":
        return text(str(os.getpid()))
    if name == "calls":
        return text(str(count))
    return types.CallToolResult(content=[types.TextContent(text=f"no tool {name}")], is_error=True)


async def main() -> None:
    server = Server("sample", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main())
