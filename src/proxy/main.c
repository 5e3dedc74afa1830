#include <stdio.h>
int main(void) { puts("weft-proxy"); return 0; }
