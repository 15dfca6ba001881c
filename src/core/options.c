/*
 * Options: one table, read once at start-up from the environment by walking
 * environ directly (getenv could race with setenv later; nothing here may
 * allocate). Every option is FT_MALLOC_<NAME>. Booleans take 1/0, yes/no,
 * on/off, true/false; counts take a decimal number with an optional K/M/G;
 * texts are kept as given (environ's strings live as long as the process).
 * A bad value (unparsable, or past the option's bound) keeps the default
 * and says so on stderr.
 */
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "ftm/internal.h"

enum option_kind { OPT_BOOL, OPT_COUNT, OPT_TEXT };

static const struct {
	const char *name;      /* after the FT_MALLOC_ prefix */
	enum option_kind kind; /* how the value is parsed */
	long fallback;         /* value when unset or invalid */
	long most;             /* largest valid count (0: no bound but the parser's) */
} option_table[FTM_OPT_COUNT] = {
    [FTM_OPT_ARENAS] = {"ARENAS", OPT_COUNT, 0},
    [FTM_OPT_ABORT_ON_ERROR] = {"ABORT_ON_ERROR", OPT_BOOL, 0},
    [FTM_OPT_VERBOSE] = {"VERBOSE", OPT_BOOL, 0},
    [FTM_OPT_SCRIBBLE] = {"SCRIBBLE", OPT_BOOL, 0},
    [FTM_OPT_GUARD] = {"GUARD", OPT_BOOL, 0},
    [FTM_OPT_HISTORY] = {"HISTORY", OPT_COUNT, 0},
    [FTM_OPT_LEAK_REPORT] = {"LEAK_REPORT", OPT_BOOL, 0},
    [FTM_OPT_STATS] = {"STATS", OPT_BOOL, 0},
    [FTM_OPT_OUTPUT] = {"OUTPUT", OPT_TEXT, 0},
    [FTM_OPT_DUMP] = {"DUMP", OPT_TEXT, 0},
    [FTM_OPT_DUMP_SIGNAL] = {"DUMP_SIGNAL", OPT_COUNT, 0, NSIG - 1},
    [FTM_OPT_SHOW_FULL] = {"SHOW_FULL", OPT_BOOL, 0},
    [FTM_OPT_CALLERS] = {"CALLERS", OPT_BOOL, 0},
    [FTM_OPT_DECAY_MS] = {"DECAY_MS", OPT_COUNT, 5000},
    [FTM_OPT_PREFAULT] = {"PREFAULT", OPT_BOOL, 1},
};

long ftm_options[FTM_OPT_COUNT];
const char *ftm_option_text[FTM_OPT_COUNT];

#define PREFIX "FT_MALLOC_"

static bool parse_bool(const char *s, long *out)
{
	static const char *const yes[] = {"1", "yes", "on", "true"};
	static const char *const no[] = {"0", "no", "off", "false"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
		if (!strcasecmp(s, yes[i]))
			return (*out = 1), true;
		if (!strcasecmp(s, no[i]))
			return (*out = 0), true;
	}
	return false;
}

static bool parse_count(const char *s, long *out)
{
	long v = 0;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (1L << 40))
			return false;
		v = v * 10 + (*s - '0');
	}
	int shift = *s == 'K' || *s == 'k' ? 10 : *s == 'M' || *s == 'm' ? 20 : *s == 'G' || *s == 'g' ? 30 : 0;
	if (shift)
		s++;
	if (*s)
		return false;
	*out = v << shift;
	return true;
}

static void option_set(int id, const char *value)
{
	long v;
	if (option_table[id].kind == OPT_TEXT) {
		ftm_option_text[id] = *value ? value : NULL;
		ftm_options[id] = *value != 0;
		return;
	}
	bool ok = option_table[id].kind == OPT_BOOL ? parse_bool(value, &v) : parse_count(value, &v);
	if (ok && option_table[id].most && v > option_table[id].most)
		ok = false;
	if (ok) {
		ftm_options[id] = v;
		return;
	}
	struct ftm_out o = {.fd = 2};
	out_str(&o, "ft_malloc: ignoring " PREFIX);
	out_str(&o, option_table[id].name);
	out_str(&o, "=");
	out_str(&o, value);
	out_str(&o, " (invalid value)");
	out_line_end(&o);
	out_flush(&o);
}

void options_print(void)
{
	struct ftm_out o = {.fd = ftm_report_fd};
	for (int id = 0; id < FTM_OPT_COUNT; id++) {
		out_str(&o, "ft_malloc: " PREFIX);
		out_str(&o, option_table[id].name);
		out_str(&o, "=");
		if (option_table[id].kind == OPT_TEXT)
			out_str(&o, ftm_option_text[id] ? ftm_option_text[id] : "");
		else
			out_dec(&o, (uint64_t)ftm_options[id]);
		out_line_end(&o);
	}
	out_flush(&o);
}

void options_load(char **env)
{
	for (int id = 0; id < FTM_OPT_COUNT; id++) {
		ftm_options[id] = option_table[id].fallback;
		ftm_option_text[id] = NULL;
	}
	for (; env && *env; env++) {
		if (strncmp(*env, PREFIX, sizeof(PREFIX) - 1))
			continue;
		const char *name = *env + sizeof(PREFIX) - 1;
		for (int id = 0; id < FTM_OPT_COUNT; id++) {
			size_t len = strlen(option_table[id].name);
			if (!strncmp(name, option_table[id].name, len) && name[len] == '=')
				option_set(id, name + len + 1);
		}
	}
}
