"""The parent zone: DS submission (a command, or an RFC 2136 UPDATE with TSIG), the agents' view."""
