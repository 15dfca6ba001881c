/*
 * Output without stdio: a line buffer flushed with write(2), number
 * formatting, and the one-line diagnostic for bad input. Nothing here
 * allocates or takes a lock, so it is safe inside malloc and in a child
 * after fork.
 */
#include <stdlib.h>
#include <string.h>

#include "ftm/internal.h"

void out_flush(struct ftm_out *o)
{
	os_write(o->fd, o->buf, o->len);
	o->len = 0;
}

static void out_bytes(struct ftm_out *o, const char *s, size_t n)
{
	if (o->len + n > sizeof(o->buf))
		out_flush(o);
	if (n > sizeof(o->buf))
		n = sizeof(o->buf);
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

void out_str(struct ftm_out *o, const char *s)
{
	out_bytes(o, s, strlen(s));
}

void out_hex(struct ftm_out *o, uintptr_t v)
{
	char tmp[2 + 2 * sizeof(v)];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	tmp[--i] = 'x';
	tmp[--i] = '0';
	out_bytes(o, tmp + i, sizeof(tmp) - i);
}

void out_dec(struct ftm_out *o, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_bytes(o, tmp + i, sizeof(tmp) - i);
}

/* Ends a line; the buffer is flushed only between lines, so concurrent
 * writers never interleave inside one. */
void out_line_end(struct ftm_out *o)
{
	out_bytes(o, "\n", 1);
	if (o->len > sizeof(o->buf) - 256)
		out_flush(o);
}

/* Up to len bytes as "hex bytes  |ascii|" lines of 16. */
void out_hexdump(struct ftm_out *o, const unsigned char *p, size_t len)
{
	for (size_t line = 0; line < len; line += 16) {
		out_str(o, "    ");
		for (size_t i = line; i < line + 16; i++) {
			char hex[4] = {' ', ' ', ' ', 0};
			if (i < len) {
				hex[0] = "0123456789abcdef"[p[i] >> 4];
				hex[1] = "0123456789abcdef"[p[i] & 15];
			}
			out_str(o, hex);
		}
		out_str(o, " |");
		for (size_t i = line; i < line + 16 && i < len; i++) {
			char c[2] = {p[i] >= 32 && p[i] < 127 ? (char)p[i] : '.', 0};
			out_str(o, c);
		}
		out_str(o, "|");
		out_line_end(o);
	}
}

int ftm_report_fd = 2;

/* "ft_malloc: free(): double free 0x..." on the report fd (stderr unless
 * FT_MALLOC_OUTPUT says otherwise), then abort() when
 * FT_MALLOC_ABORT_ON_ERROR is set. */
void report_error(const char *call, const char *reason, const void *p)
{
	struct ftm_out o = {.fd = ftm_report_fd};
	out_str(&o, "ft_malloc: ");
	out_str(&o, call);
	out_str(&o, "(): ");
	out_str(&o, reason);
	out_str(&o, " ");
	out_hex(&o, (uintptr_t)p);
	out_line_end(&o);
	out_flush(&o);
	if (ftm_options[FTM_OPT_ABORT_ON_ERROR])
		abort();
}
