DROP TABLE {{schema}}millrace_periodic;
