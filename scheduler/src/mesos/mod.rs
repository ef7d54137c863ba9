//! The Mesos v1 scheduler client: a sans-IO state machine, its async HTTP shell, and leading-master detection.
