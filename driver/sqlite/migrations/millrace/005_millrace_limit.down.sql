DROP TABLE {{schema}}millrace_limit_bound;
DROP TABLE {{schema}}millrace_limit;
