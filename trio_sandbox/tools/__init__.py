"""The tool server that runs inside the sandbox: shell commands, background tasks, file edits.

Tools keep the names and parameters of the original tool server so agents written for it keep
working. The transport (mTLS, Streamable HTTP, WebSocket) is wired elsewhere.
"""

from ._errors import SpawnError as SpawnError
from ._errors import ToolServerOptionsError as ToolServerOptionsError
from ._errors import ToolServerWedged as ToolServerWedged
from ._file_common import split_lines as split_lines
from ._file_view import glob_regex as glob_regex
from ._limits import ToolLimits as ToolLimits
from ._main import ToolServerOptions as ToolServerOptions
from ._main import main as main
from ._main import parse_options as parse_options
from ._main import serve_tool_server as serve_tool_server
from ._output import TailBuffer as TailBuffer
from ._output import clean_text as clean_text
from ._passwords import generate_password as generate_password
from ._process import (
    ShellExit as ShellExit,
)
from ._process import (
    run_shell as run_shell,
)
from ._tasks import (
    BackgroundTask as BackgroundTask,
)
from ._tasks import (
    TaskManager as TaskManager,
)
from ._tasks import (
    TaskStatus as TaskStatus,
)
from ._tasks import (
    open_task_manager as open_task_manager,
)
from ._toolset import build_tool_server as build_tool_server
from ._toolset import open_tool_server as open_tool_server
