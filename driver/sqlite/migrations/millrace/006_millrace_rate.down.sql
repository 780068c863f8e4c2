DROP TABLE {{schema}}millrace_pause;
DROP TABLE {{schema}}millrace_rate;
