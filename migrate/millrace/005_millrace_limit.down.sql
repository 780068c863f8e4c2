DROP TABLE {{schema}}millrace_limit;
