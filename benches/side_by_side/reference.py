"""The reference supervisor of the side-by-side benchmark (benches/side_by_side.rs).

A minimal asyncio loop doing what the Python app's TaskManager did for one task: spawn the CLI in a session of its
own with piped stdin/stdout, write the prompt, read stream-json lines, await the exit, and call back, which sends a
`task_ended` event to every subscriber. It speaks the subset of ptt's control protocol the benchmark uses (JSON lines
on a Unix socket: `start` answered with `started` and a task id, `subscribe` answered with `subscribed` and then
events), so one client drives both supervisors the same way. Nothing is persisted: this is the floor an asyncio
program reaches, not a full supervisor.

usage: reference.py SOCKET CLAUDE
"""

import asyncio
import json
import os
import sys


class TaskManager:
    def __init__(self, claude):
        self.claude = claude
        self.next_id = 1
        self.tasks = {}
        self.subscribers = []

    async def start(self, prompt, cwd):
        task_id = f"t{self.next_id}"
        self.next_id += 1
        proc = await asyncio.create_subprocess_exec(
            self.claude, "-p", "--output-format", "stream-json", "--verbose",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=cwd, start_new_session=True)
        proc.stdin.write(prompt.encode())
        proc.stdin.close()
        self.tasks[task_id] = {"id": task_id, "state": "running", "pid": proc.pid}
        asyncio.get_running_loop().create_task(self.watch(task_id, proc))
        return task_id

    async def watch(self, task_id, proc):
        result = None
        async for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "result":
                result = msg
        code = await proc.wait()
        ok = code == 0 and result is not None and not result.get("is_error")
        self.tasks[task_id]["state"] = "succeeded" if ok else "failed"
        self.on_done(task_id)

    def on_done(self, task_id):
        line = (json.dumps({"event": "task_ended", "task": self.tasks[task_id]}) + "\n").encode()
        for w in list(self.subscribers):
            if w.is_closing():
                self.subscribers.remove(w)
            else:
                w.write(line)


async def serve(manager, reader, writer):
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            req = json.loads(raw)
            cmd = req.get("cmd")
            if cmd == "subscribe":
                writer.write(b'{"subscribed":true}\n')
                manager.subscribers.append(writer)
            elif cmd == "start":
                task_id = await manager.start(req["text"], req.get("dir"))
                writer.write((json.dumps({"status": "started", "task_id": task_id}) + "\n").encode())
            else:
                writer.write(b'{"status":"error","message":"unknown request"}\n')
    except (ConnectionError, ValueError):
        return


async def main(socket_path, claude):
    manager = TaskManager(claude)
    server = await asyncio.start_unix_server(lambda r, w: serve(manager, r, w), path=socket_path)
    os.chmod(socket_path, 0o600)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
