DROP TABLE {{schema}}millrace_leader;
