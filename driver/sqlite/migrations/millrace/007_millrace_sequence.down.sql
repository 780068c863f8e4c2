DROP TABLE {{schema}}millrace_sequence_job;
DROP TABLE {{schema}}millrace_sequence;
