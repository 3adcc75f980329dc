/* A plugin found only through its loader's RUNPATH. */
int plug_value(void) { return PLUG_VALUE; }
