#!/usr/bin/python3
"""A tiny freedesktop notification server for tests: owns org.freedesktop.Notifications on the session bus
given by DBUS_SESSION_BUS_ADDRESS, answers like a real one, and appends every Notify call to a file as one
JSON line (app_name, replaces_id, summary, body, hints, the id it returned). Writes "ready" to the file named
by argv[2] once the name is owned. Needs python3-dbus and python3-gi (Debian)."""
import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

LOG, READY = sys.argv[1], sys.argv[2]


class Server(dbus.service.Object):
    def __init__(self, bus):
        self.next_id = 1
        name = dbus.service.BusName("org.freedesktop.Notifications", bus, do_not_queue=True)
        super().__init__(name, "/org/freedesktop/Notifications")

    @dbus.service.method("org.freedesktop.Notifications", in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app_name, replaces_id, icon, summary, body, actions, hints, timeout):
        if replaces_id:
            nid = int(replaces_id)
        else:
            nid = self.next_id
            self.next_id += 1
        record = {
            "app_name": str(app_name),
            "replaces_id": int(replaces_id),
            "summary": str(summary),
            "body": str(body),
            "urgency": int(hints["urgency"]) if "urgency" in hints else None,
            "hints": {str(k): str(v) for k, v in hints.items()},
            "id": nid,
        }
        with open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        return dbus.UInt32(nid)

    @dbus.service.method("org.freedesktop.Notifications", in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["body"]

    @dbus.service.method("org.freedesktop.Notifications", in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("ptt-test", "ptt", "1", "1.2")

    @dbus.service.method("org.freedesktop.Notifications", in_signature="u", out_signature="")
    def CloseNotification(self, nid):
        pass


DBusGMainLoop(set_as_default=True)
server = Server(dbus.SessionBus())
with open(READY, "w") as f:
    f.write("ready\n")
GLib.MainLoop().run()
