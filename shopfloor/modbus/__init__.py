"""Modbus: register maps (tag specs), request planning, decoding, the simulator."""
