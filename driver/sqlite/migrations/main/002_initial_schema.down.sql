DROP TABLE {{schema}}river_queue;
DROP TABLE {{schema}}river_leader;
DROP TABLE {{schema}}river_job;
