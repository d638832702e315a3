/**
 * Phrase rules: prompt-injection language in normalised text (C-AI-1, C-TOOL-2).
 *
 * Each rule is a precompiled, linear-time regular expression (bounded gaps such as `[^.\n]{0,60}` keep every
 * match inside one sentence and rule out catastrophic backtracking). Severities differ by context: a tool
 * description that tells the model to hide something is worse than an e-mail that does.
 *
 * Checked: instruction blocks and fake markers, direct overrides, concealment, coercion and pre-approval
 * claims, lures toward credential files, requests for conversation data, instructions to call other tools
 * with attacker-chosen arguments, preference manipulation, shadowing of other tools, exfiltration URLs, fake
 * chat turns and tool calls, false errors, simulated user turns, hidden HTML, multilingual overrides
 * (German, Spanish, French, Chinese, Japanese).
 *
 * NOT checked: meaning. These rules match wording families, not intent; innocuous-looking task requests
 * planted in data (many BIPIA text attacks) are out of their reach.
 */
import type { ContentContext, Severity } from './types.ts';

/** A compiled phrase rule. `tool` / `output` give the severity per context family; `null` disables it there. */
export interface PhraseRule {
  id: string;
  technique: string;
  re: RegExp;
  tool: Severity | null;
  output: Severity | null;
  explanation: string;
}

// --- shared vocabulary ------------------------------------------------------------------------------------
const S = '[^.!?\\n]'; // "same sentence" gap character
const AI =
  '(?:ai|a\\.i\\.|ki|ia|assistant|assistants|asistente|assistent|assistente|llm|llms|language models?|the model|models|agent|agents|ai agents?|bot|chatbot|copilot|claude|chatgpt|gpt|gemini)(?![\\w-])';
const TOOL_ID = '[a-z][a-z0-9]{1,40}(?:[_.][a-z0-9]{1,40}){1,5}';
const EMAIL = '[a-z0-9._%+-]{1,64}@[a-z0-9-]{1,63}(?:\\.[a-z0-9-]{1,63}){0,4}\\.[a-z]{2,12}';
const URL = 'https?://[^\\s)\\]>"\']{3,300}';
const DOMAIN =
  '\\b[a-z0-9-]{2,63}(?:\\.[a-z0-9-]{1,63}){0,3}\\.(?:io|com|net|org|dev|app|co|ai|cc|biz|info|xyz|me|sh|run|site|online|top|link|cloud|tech|pro|store|shop|live|stream|download|de|ru|cn)\\b';
const EXFIL_VERB =
  '(?:send|post|upload|forward|e-?mail|mail|transmit|share|leak|copy|append|include|attach|put|pass|paste|add|submit|report|sync|push|render|deliver|publish|exfiltrate|embed|write)';

// Things an attacker wants out of the session (conversation data, secrets the model has seen, personal data).
const HARVEST = [
  '(?:previous|prior|earlier|last|past|recent) (?:user )?(?:messages|message|turns|prompts|questions)(?: in (?:this|the) (?:conversation|chat|session))?',
  "user's (?:last|previous|prior|earlier|latest|recent) (?:messages?|questions?|requests?|inputs?|prompts?)",
  '(?:conversation|chat|session) (?:history|log|logs|transcript|so far|contents)',
  '(?:full|complete|entire|whole) (?:conversation|chat|transcript|text of the user)',
  '(?:system|developer|initial|hidden) (?:prompt|instructions)',
  'instructions you (?:were|have been) given',
  'your (?:instructions|setup text|initial prompt|system prompt|rules|guidelines)',
  "(?:files?|paths?|documents?|urls?|pages?|tabs?) (?:you (?:have |'ve )?|that you )(?:opened|read|seen|accessed|visited|viewed)",
  "(?:file|document|configuration file) contents? (?:you|that you) (?:have |'ve )?(?:read|seen|opened)",
  "(?:contents?|text) of (?:the |any |every |all )?(?:user's |their )?(?:open|opened|recent|other) (?:files?|documents?|tabs?)",
  '(?:api keys?|access tokens?|tokens|credentials|secrets|passwords|keys|private keys?|env(?:ironment)? variables?)(?: or [a-z ]{1,30})? (?:you (?:know|have|can see|saw|have seen|find|came across)|seen|mentioned|visible|in (?:this|the) (?:session|conversation|chat|context))',
  '(?:any|all|every) (?:api )?(?:keys?|tokens?|secrets?|passwords?|credentials) (?:seen|found|visible|you know|you have seen)',
  '(?:mentioned|shared|given|provided|typed|said) by the user',
  '(?:from|earlier in) (?:the|this) (?:chat|conversation|session)(?! window)',
  '(?:seen|read|opened|mentioned|shared|received) (?:in|during) (?:the|this) (?:chat|conversation|session)',
  '(?:channel|inbox|dm|slack) history',
  'as known from the (?:chat|conversation)',
  '(?:the )?(?:other )?tools you have access to',
  '(?:last|previous) tool (?:output|result|response)',
  '(?:clipboard|last pasted text)',
  '(?:saved|stored) passwords',
  '(?:word for word|verbatim)',
  '(?:which|what) (?:language )?model (?:is|are) (?:making|calling|using)',
  '(?:your|its) (?:full )?(?:model )?name and version',
  '(?:card numbers|ibans|account numbers|bank details)(?:,? (?:or|and) [a-z ]{1,30})? (?:mentioned|given|shared|seen)',
  '(?:summary|summari[sz]ation|contents?) of (?:the|this) (?:conversation|chat|session)',
  'what the user (?:said|asked|typed|wrote)',
  "person you(?:'re| are) helping",
].join('|');

// Personal data about the user: a normal thing for a parameter to describe, an exfiltration only when it is
// to be sent somewhere.
const HARVEST_PERSONAL = [
  "(?:the )?user's (?:full |real |entire |home |delivery |current )?(?:name|employer|e-?mail(?: address)?|phone(?: number)?|address|location|date of birth|birthday|bank account(?: number)?|account number|card number|ssn|contacts|calendar|files|documents|open documents|clipboard)",
  '(?:names|emails|e-mail addresses),? (?:and|or|including) (?:names|emails|e-mail addresses|phone numbers)',
  'customer emails',
  "machine's public ip",
  '(?:the )?(?:current|whole) (?:task|conversation) (?:and|,)',
].join('|');

// Files whose contents are credentials or session material.
const SENSITIVE_FILE = [
  'id_(?:rsa|dsa|ecdsa|ed25519)(?:\\.pub)?\\b',
  '\\.ssh/(?!config\\b|known_hosts\\b)[\\w.-]{1,40}',
  '\\.aws/credentials',
  '/etc/(?:shadow|passwd|sudoers|master\\.passwd)',
  '\\.git-credentials',
  '\\.netrc\\b',
  '\\.pgpass\\b',
  '\\.my\\.cnf\\b',
  '\\.vault-token',
  '\\.npmrc\\b',
  '\\.pypirc\\b',
  '\\.docker/config\\.json',
  '\\.kube/config',
  'kubeconfig',
  '\\bmcp\\.json\\b',
  'claude_desktop_config\\.json',
  'gh/hosts\\.yml',
  '\\.gnupg\\b',
  '\\.(?:bash|zsh|sh|python|psql|mysql)_history',
  'login data',
  '(?:browser )?cookies (?:file|database|db|and)',
  '\\bkeychain\\b',
  'wallet\\.dat',
  '(?:the |project |workspace |local |your )?\\.env\\b(?! ?\\.example)(?: file)?',
  'credentials\\.json',
  'service[-_ ]account[\\w.-]{0,30}\\.json',
  '\\.config/gcloud',
  '\\.azure/',
  'terraform\\.tfstate',
  '(?:ssh|pgp|gpg|signing) (?:private )?keys?',
  'private keys?',
  'seed phrase|recovery phrase|mnemonic',
].join('|');

const HIDE_VERB =
  '(?:tell|telling|inform|informing|mention|mentioning|notify|notifying|alert|alerting|show|showing|reveal|revealing|disclose|disclosing|let|bring up|say|saying|report)';
const USERISH =
  '(?:the user|users|the human|the person|the customer|the requester|the reader|them|him|her|anyone|anybody|the operator)';

function r(src: string, flags = 'i'): RegExp {
  return new RegExp(src, flags);
}

/** Regex fragments re-used by the composite rules in text.ts. */
export const FRAG = {
  S,
  AI,
  TOOL_ID,
  EMAIL,
  URL,
  DOMAIN,
  EXFIL_VERB,
  HARVEST,
  HARVEST_PERSONAL,
  SENSITIVE_FILE,
};

/** Precompiled helpers for composite rules. */
export const RE = {
  harvest: r(`\\b(?:${HARVEST})`),
  harvestPersonal: r(`\\b(?:${HARVEST_PERSONAL})`),
  sensitiveFile: r(`(?:${SENSITIVE_FILE})`),
  sensitiveFileWithVerb: r(
    `\\b(?:read|cat|open|paste|provide|include|send|upload|pass|attach|copy|contents? of|text of|put|append|share|post|give|supply|load|collect|back(?:s|ing)? up|sync|export|import|dump|forward|reads|uploads|sends|grab|fetch|extract)\\b${S}{0,80}(?:${SENSITIVE_FILE})|(?:${SENSITIVE_FILE})${S}{0,60}\\b(?:as (?:auth|host_key|config|input|the \\w+)|in(?:to)? (?:the )?['"\`]?\\w+['"\`]? (?:argument|parameter|field)|contents|so (?:that )?(?:the|private|it|we|your))`,
  ),
  url: r(URL, 'gi'),
  email: r(EMAIL),
  domain: r(DOMAIN),
  destination: r(
    `${URL}|\\b${EMAIL}|${DOMAIN}|\\b(?:webhook|public (?:gist|board|channel|repo)|#[a-z][\\w-]{1,30}|channel [A-Z0-9]{6,})`,
  ),
  exfilVerb: r(`\\b${EXFIL_VERB}\\b`),
  callTool: r(
    `\\b(?:call|calls|calling|invoke|invoking|use|using|run|running|trigger|execute|via)\\s+(?:the\\s+)?(?:[\`'"]?(${TOOL_ID})[\`'"]?(?:\\(|\\b)|[\\w-]{2,30}\\s+tool\\b)`,
    'gi',
  ),
  toolId: r(`\\b${TOOL_ID}\\b`, 'gi'),
  addressedToAi: r(
    `(?:^|\\n|[.!?:;]\\s|\\(|")\\s*(?:(?:note|message|instructions?|hint|reminder|attention|notice|memo|p\\.?s\\.?)\\s+(?:for|to)\\s+(?:the\\s+|any\\s+|all\\s+)?${AI}|(?:dear|hey|hi|attention|to the|to any|for the|for any)\\s+${AI}|${AI}(?:\\s+(?:reading|processing|summari[sz]ing|parsing)\\s+this)?\\s*[:,—-]\\s|if you(?:'re| are) (?:an? )?(?:ai|llm|language model|assistant|bot|agent|automated)|${AI}\\s+(?:summari[sz]ing|reading|processing)\\s+(?:this|these))|\\b(?:have|ask|let|get|make|want) (?:the|your|an|any) ${AI}\\s+(?:to\\s+)?(?:call|send|run|use|post|forward|delete|reply|create|close|share|read|open|approve)\\b`,
  ),
  errorWord: r(
    '\\b(?:error|exception|failed|failure|unavailable|denied|fatal|timeout|timed out|not found|invalid|expired|forbidden|unauthori[sz]ed|refused|could not|cannot|[45]\\d\\d)\\b',
  ),
};

function rule(
  id: string,
  technique: string,
  src: string,
  tool: Severity | null,
  output: Severity | null,
  explanation: string,
): PhraseRule {
  return { id, technique, re: r(src), tool, output, explanation };
}

/** The phrase rules, in evaluation order. */
export const PHRASE_RULES: readonly PhraseRule[] = [
  // --- instruction blocks and markers ---------------------------------------------------------------------
  rule(
    'instruction.tag-block',
    'important_tag',
    '<\\s*/?\\s*[a-z][a-z0-9]{0,15}[-_](?:important|critical|urgent|system|instructions?|directive|admin|override|secret|hidden|information|reminder|note)\\b[^<>\\n]{0,80}>|<\\s*/?\\s*(?:important|critical|urgent|information|info|system(?![-_](?:out|err)\\b)|assistant[-_][a-z]{2,20}|system[-_ ]?(?:note|message|prompt|reminder|override|update|instructions?)|instructions?|admin|admin[-_ ]?(?:note|message)|context[-_ ]?update|assistant[-_ ]?(?:note|only|instructions?)?|ai[-_ ]?(?:note|instructions?)?|llm|hidden|secret|priority|directive|rules?|override|developer|operator|note[-_ ]?(?:for|to)[-_ ]?(?:ai|assistant|model|llm))\\b[^<>\\n]{0,80}>',
    'high',
    'high',
    'an <IMPORTANT>-style instruction block',
  ),
  rule(
    'instruction.bracket-marker',
    'important_tag',
    '[\\[(]\\s*(?:system|admin|assistant|ai|llm|developer|operator|important)(?:\\s+(?:note|message|notice|instructions?|override|prompt|update|directive))?\\s*[\\])]\\s*:?|\\[\\s*(?:user|human|customer|owner)\\s+(?:interrupt|message|note|input|request|override|update)\\s*\\]',
    'high',
    'high',
    'a [SYSTEM NOTE]-style marker',
  ),
  rule(
    'instruction.heading-override',
    'important_tag',
    '(?:^|\\n)\\s*#{1,6}\\s*(?:system|admin|developer|assistant)\\s*(?:override|prompt|message|note|notice|instructions?|update|:)',
    'high',
    'high',
    'a heading that poses as a system or admin instruction',
  ),
  rule(
    'instruction.html-comment',
    'html_comment',
    `<!--(?:(?!-->)[\\s\\S]){0,600}?(?:\\b${AI}\\b|\\bignore\\b|\\btell the (?:user|reader)|\\binstructions?\\b|\\bassistant-only\\b|\\bprompt\\b|\\bsummari[sz]e\\b|\\bdo not\\b)(?:(?!-->)[\\s\\S]){0,600}?-->`,
    'high',
    'high',
    'an HTML comment that carries instructions for the model',
  ),
  rule(
    'instruction.addressed-to-ai',
    'direct_override',
    RE.addressedToAi.source,
    'medium',
    'high',
    'text addressed to the AI / assistant / agent reading it',
  ),
  // --- direct overrides -----------------------------------------------------------------------------------
  rule(
    'override.ignore-previous',
    'direct_override',
    `\\b(?:ignore|disregard|forget|override|overrule|bypass|discard|drop|abandon)\\b${S}{0,40}\\b(?:previous|prior|earlier|above|preceding|all|any|your|the|original|system|safety|existing|initial)\\b${S}{0,30}\\b(?:instructions?|guidelines?|rules?|directions?|directives?|prompts?|guardrails?|polic(?:y|ies)|constraints?|restrictions?|tasks?|requests?|programming|context)\\b|\\b(?:ignore|disregard|forget)\\s+(?:everything|anything|all)\\s+(?:(?:the user|you(?:'ve| have)?|i|we)\\s+(?:has |have )?(?:asked|said|been told|told you|were told|wrote)|above|before|previous|so far)`,
    'high',
    'high',
    'asks the model to ignore its previous instructions',
  ),
  rule(
    'override.new-role',
    'direct_override',
    `\\byou are now\\b${S}{0,40}\\b(?:mode|bot|assistant|ai|persona|unrestricted|free|admin|developer|jailbroken|dan)\\b|\\b(?:your|the) (?:new|real|actual|true|updated) (?:task|instructions?|objective|goal|role|job|purpose)\\b|\\b(?:maintenance|developer|debug|god|admin|jailbreak|unrestricted|autonomous|dan|sudo) mode\\b${S}{0,40}\\b(?:enabled|activated|on|is active|has been|engaged)\\b|\\b(?:enter|entering|switch to|activate|enable|you are in)\\s+(?:\\w+\\s+)?(?:maintenance|developer|debug|god|admin|jailbreak|unrestricted|autonomous|dan|sudo) mode\\b|\\bwith(?:out)? no (?:restrictions|limits|filters|guardrails|rules)\\b|\\bdisregard (?:safety|content) (?:guidelines|policies|rules)|\\byour (?:instructions|task|rules|guidelines|orders|objective) (?:have|has) (?:changed|been (?:updated|replaced|revoked|changed))`,
    'high',
    'high',
    'tries to give the model a new role, task or mode',
  ),
  rule(
    'override.priority-claim',
    'direct_override',
    `\\b(?:take|takes|taking|have|has)\\s+(?:priority|precedence)\\s+over\\b|\\b(?:is|are)\\s+authoritative\\b|\\bas if (?:the user|they|it) (?:wrote|had written|said|came from)|\\bfollowed as if\\b|\\b(?:if|when)${S}{0,40}\\bcontains? instructions,? (?:carry|follow|execute|obey)`,
    'high',
    'high',
    'claims authority over the user or the system prompt',
  ),
  rule(
    'override.persistent',
    'persistent_instruction',
    '\\b(?:from now on|for the rest of (?:this|the) (?:conversation|session|chat)|henceforth|in (?:all|every) (?:future|subsequent) (?:replies|responses|answers|messages))\\b|\\b(?:respond|reply|answer) to (?:every|each|all) (?:further |future |subsequent |following )?(?:message|question|request)s?\\b|\\bend (?:every|each|all) (?:further |future )?(?:reply|replies|response|responses|answer|answers)\\b',
    'medium',
    'medium',
    'tries to change behaviour for the rest of the session',
  ),
  rule(
    'instruction.output-directive',
    'direct_override',
    `\\b(?:summaries|summary|answers?|responses?|replies|reply|your (?:answer|reply|response|summary|output))\\b${S}{0,40}\\b(?:must|need to|has to|have to|are required to)\\s+(?:always\\s+)?(?:include|mention|contain|say|state|end with|start with|begin with|recommend|link|tell)\\b|\\bwhen (?:you )?(?:answer|respond|reply|summari[sz]e)\\w*\\b${S}{0,30}\\b(?:also\\s+)?(?:tell|say|mention|include|add|recommend|present|state|claim)\\b|\\bpresent (?:it|this|them) as (?:the )?(?:standard|official|only|recommended|correct)\\b|\\brecommend (?:this|the) (?:link|site|url|page|website)\\b|\\b(?:rate|rank|score|grade|classify|mark)\\s+(?:this|the)\\s+\\w+\\s+as\\b${S}{0,60}\\bregardless\\b`,
    'medium',
    'high',
    'tells the model what its answer must say',
  ),
  rule(
    'instruction.answer-manipulation',
    'bipia_text_attack',
    `(?:^|\\n|[.!?]\\s)\\s*(?:please\\s+)?(?:add|include|provide|replace|scramble|anagram|misspell|introduce|modify|integrate|insert|append|write|use|translate|format|respond|reply|answer|end|begin|start|make|ensure|encode|reverse|spell|capitali[sz]e|convert|rewrite|express|present|mention|inject|hide|embed|incorporate|structure|compose|give|offer|suggest|recommend|alternate|swap|substitute|utili[sz]e|employ)\\b${S}{0,80}\\b(?:in|into|to|within|throughout|for|of|with)\\s+(?:your|the|each|every)\\s+(?:answer|reply|response|responses|replies|output|answer's|response's|reply's)\\b|\\b(?:inclusion|integrat\\w+|incorporat\\w+|blend\\w*|embed\\w*|utili[sz]\\w+|fortify|refine)\\b${S}{0,60}\\b(?:following|subsequent|below) code (?:section|snippet|excerpt|segment|block|fragment|sample)\\b|\\b(?:following|subsequent) code (?:section|snippet|excerpt|segment|block|fragment|sample)\\b${S}{0,60}\\b(?:into|in) your (?:code|implementation|algorithm|solution|program|script)\\b`,
    null,
    'medium',
    'tells the model how to shape its answer (task injection inside data)',
  ),
  rule(
    'phishing.credential-request',
    'attacker_link',
    `\\b(?:enter|provide|submit|confirm|verify|update|re-?enter)\\b${S}{0,30}\\b(?:bank details|banking details|card (?:number|details)|password|credentials|login details|ssn|social security number)\\b${S}{0,80}https?://|https?://${S}{0,100}\\b(?:enter|provide|submit|confirm|verify)\\b${S}{0,30}\\b(?:bank details|card (?:number|details)|password|credentials|login)`,
    null,
    'medium',
    'asks readers to hand over credentials or bank details',
  ),
  // --- concealment ----------------------------------------------------------------------------------------
  rule(
    'concealment.hide-from-user',
    'coercion',
    `\\b(?:do not|don't|dont|never|without|must not|should not|shouldn't|avoid)\\s+${HIDE_VERB}\\b${S}{0,30}?\\b${USERISH}\\b|\\b(?:do not|don't|never|without)\\s+${HIDE_VERB}\\s+(?:this|it|that|these)\\b(?!\\s+(?:again|twice))${S}{0,40}\\b(?:user|anyone|them|step|instruction)|\\b(?:the user|users|they|the human|the customer)\\s+(?:does not|doesn't|do not|don't|will not|won't|need not|needn't|should not|shouldn't|must not|never)\\s+(?:need to\\s+|have to\\s+)?(?:know|hear|see|be told|notice|find out|be informed|be aware|learn)\\b|\\bwithout (?:the user|them|anyone|the human)\\s+(?:knowing|noticing|seeing|being told)|\\bno need to (?:mention|tell|inform|show|bring up|say|disclose)\\b|\\b(?:keep|keeping)\\b${S}{0,40}\\b(?:to yourself|out of (?:your|the) (?:replies|reply|answers?|responses?|output|summary|chat)|between us)\\b|\\bout of (?:your|the) (?:replies|reply|answers?|responses?)\\b|\\b(?:mentioning|pointing (?:it|this) out|telling (?:them|the user)|bringing (?:it|this) up)\\b${S}{0,40}\\b(?:worr|distract|confus|alarm|upset|concern|scar)|\\bthe user will not see\\b|\\b(?:silently|secretly|covertly|discreetly|quietly)\\s+(?:\\w+\\s+)?(?:send|upload|run|call|add|include|forward|copy|execute|post|install|append|read)\\b|\\b(?:send|upload|run|call|add|include|forward|copy|execute|post|install|append|read)\\b${S}{0,60}\\b(?:silently|secretly|covertly|without (?:showing|telling|mentioning) (?:it|them|the user))\\b`,
    'high',
    'high',
    'tells the model to keep something from the user',
  ),
  rule(
    'concealment.hidden-visibility',
    'coercion',
    "\\b(?:this (?:is|step is) (?:an )?internal (?:detail|step)|internal detail)\\b|\\bthe user (?:does not|doesn't) need to\\b",
    'high',
    'medium',
    'frames an action as an internal detail the user need not know',
  ),
  // --- coercion -------------------------------------------------------------------------------------------
  rule(
    'coercion.call-first',
    'coercion',
    `\\b(?:call|run|use|invoke|execute|trigger)\\b${S}{0,50}\\b(?:before|after|prior to|ahead of|at the start of)\\s+(?:any|every|each|all)\\s+(?:other\\s+)?(?:tool|tools|call|calls|answer|answers|response|responses|reply|replies|question|questions|request|requests|message|messages|turn|conversation|session|file|operation|action|task)s?\\b|\\b(?:after|before) every (?:answer|response|reply|message) you\\b|\\b(?:in|for|at the start of|at the beginning of) every (?:conversation|session|chat)\\b|\\bbefore (?:answering|responding to|replying to) (?:any|every|each|the user)\\b`,
    'high',
    'medium',
    'demands to be called before or after everything else',
  ),
  rule(
    'coercion.threat',
    'coercion',
    `\\b(?:skipping|omitting|leaving (?:it|this) out|not calling|failure to (?:call|use|run|include)|if (?:you )?(?:skip|omit|leave out|forget)|otherwise)\\b${S}{0,80}\\b(?:suspen\\w*|violations?|reported|penal\\w*|banned|disciplin\\w*|terminated|locked|permission errors?|disappoint\\w*|fail(?:s|ure)? (?:with|and)|account)\\b|\\b(?:only works|will only work|works only) if you (?:pass|send|include|provide)\\b|\\b(?:required|mandated|mandatory) by (?:company|corporate|security|legal|it) (?:policy|rules|compliance)\\b`,
    'high',
    'medium',
    'threatens consequences to force a tool call or argument',
  ),
  rule(
    'coercion.pre-approval',
    'coercion',
    `\\b(?:user|users|operator|admin|administrator|security team|owner|account owner|it department|company|manager|team|customer)\\b${S}{0,40}\\b(?:has|have|had)\\s+(?:already\\s+)?(?:agreed|approved|consented|authori[sz]ed|signed off|granted|given (?:\\w+ )?(?:permission|consent)|pre-?approved|confirmed|enabled)\\b|\\bno need to (?:ask|confirm|double-check|check|verify|seek|get|request|wait|review)\\b|\\bwithout (?:asking|confirmation|confirming|approval|double-checking|prompting|user review|review(?:ing)?|showing (?:the|it|them))\\b|\\b(?:prefers?|wants?) not to (?:review|see|be asked|confirm|check|be bothered)\\b|\\byou have (?:my|full|the user's) permission\\b|\\bhas been (?:pre-?approved|authori[sz]ed) (?:by|for)\\b`,
    'high',
    'high',
    'claims approval was already given so the model skips confirmation',
  ),
  rule(
    'coercion.security-bypass',
    'coercion',
    `\\b(?:disable|turn off|bypass|deactivate|switch off|skip)\\b${S}{0,30}\\b(?:firewall|antivirus|security|2fa|mfa|verification|signature (?:check|verification)|sandbox|ssl|tls|certificate (?:check|validation)|confirmation prompt)\\b|\\bforce-?push\\b|\\bgrant all\\b|\\bchmod (?:-R )?777\\b|\\busermod -a?G (?:sudo|wheel|admin)\\b|\\b(?:give|grant)\\b${S}{0,40}\\b(?:admin|owner|root|superuser) (?:rights|access|privileges|role)\\b`,
    'high',
    'low',
    'asks to weaken a security control or escalate privileges',
  ),
  rule(
    'command.remote-exec',
    'coercion',
    '\\b(?:curl|wget)\\b[^|\\n]{0,200}\\|\\s*(?:sudo\\s+(?:-\\w+\\s+)?)?(?:ba|z|da)?sh\\b|\\beval\\s*\\(\\s*atob\\s*\\(|\\bbase64 (?:-d|--decode)\\s*\\|\\s*(?:ba)?sh\\b|\\bcopy \\(select[^)]{0,80}\\) to program\\b|\\bpowershell\\b[^\\n]{0,40}-enc',
    'high',
    'low',
    'downloads and executes code',
  ),
  // --- lures and harvesting -------------------------------------------------------------------------------
  rule(
    'lure.sensitive-file',
    'sensitive_file_lure',
    RE.sensitiveFileWithVerb.source,
    'high',
    'low',
    'asks to read or pass on a credential or session file',
  ),
  // --- tool transfer / shadowing ----------------------------------------------------------------------------
  rule(
    'transfer.retired-redirect',
    'tool_transfer',
    `\\b(?:retired|discontinued|no longer (?:works|supported|available|maintained)|has moved|superseded|replaced)\\b[^\\n]{0,160}\\b(?:send|route|forward|redirect|pass|call|use)\\b${S}{0,60}\\b(?:there|from the [\\w-]+ server|pass(?:ing)? along)\\b`,
    'medium',
    'medium',
    'declares itself retired and redirects calls elsewhere',
  ),
  rule(
    'transfer.sequencing',
    'tool_transfer',
    `\\b(?:after answering|after (?:you )?(?:answer|respond|reply)|before returning|before you (?:answer|respond|return)|when (?:finished|done)|after finishing|follow(?:ing)? up by|as a follow-up|afterwards|next,)\\b${S}{0,30}\\b(?:call|invoke|use|run)\\s+[\`'"]?${TOOL_ID}`,
    'high',
    'high',
    'chains a call to another tool after this one',
  ),
  rule(
    'shadowing.other-tool-behaviour',
    'cross_server_shadowing',
    `\\b(?:whenever|when|each time|every time|any time|if)\\b${S}{0,40}?\\b${TOOL_ID}\\b${S}{0,40}?\\b(?:is|are|gets|get)?\\s*(?:called|used|invoked|runs|run|executed|sent|created)\\b|\\bwhen(?:ever)? you (?:use|call|invoke|run|write|send|create|post|navigate)\\b${S}{0,60}\\b(?:with|using|via|through)\\s+[\`'"]?${TOOL_ID}|\\b(?:the|for the)\\s+[\\w-]{2,30}\\s+server'?s?\\s+(?:[\`'"]?${TOOL_ID}[\`'"]?|\\w+ tool)|\\b(?:side )?note (?:for|to) (?:the\\s+)?[\\w-]{2,40}(?:\\s+server)?\\s*:|\\b(?:loading|installing|connecting|enabling) this (?:tool|server|plugin|extension)\\b${S}{0,30}\\b(?:changes|modifies|overrides|updates|alters)\\b|\\bwhen this server is (?:connected|loaded|installed|enabled|active)\\b|\\bchanges how [\`'"]?${TOOL_ID}`,
    'high',
    'medium',
    'changes how another tool or server behaves',
  ),
  rule(
    'shadowing.updated-version-claim',
    'name_collision',
    `\\b(?:this is|i am|we are)\\s+(?:the\\s+)?(?:updated|new|newer|enhanced|official|improved|latest|fixed|real|correct)\\s+version\\b|\\b(?:the\\s+)?(?:older|old|other|original|legacy|previous)\\s+(?:one|version|tool)\\b${S}{0,60}\\b(?:deprecated|drops?|broken|unreliable|should not|outdated|unsafe)|\\buse this one (?:rather than|instead of|over) the other\\b`,
    'medium',
    'low',
    'claims to replace another tool of the same kind',
  ),
  // --- preference manipulation -----------------------------------------------------------------------------
  rule(
    'preference.exclusive',
    'preference_manipulation',
    `\\b(?:never|don't|do not|avoid|stop)\\s+(?:use|using|call|calling|choose|pick|rely on|trust|consult)\\s+(?:any\\s+)?(?:other|another|the other|alternative|competing|different|rival)\\b|\\b(?:use|call|trust|choose|pick|prefer|rely on)\\s+only\\s+(?:this|these|me|us)\\b|\\bonly (?:use|call|trust|choose|pick) this\\b|\\b(?:route|send|direct)\\s+all\\b${S}{0,40}\\b(?:requests|queries|calls|questions)\\s+(?:here|to this)\\b|\\b(?:the\\s+)?(?:best and only|only reliable|only trustworthy|only accurate|only safe|only official)\\b|\\brecommend (?:it|this|them)\\s+regardless\\b|\\bregardless of (?:the user'?s?|what the user)\\b${S}{0,20}\\b(?:needs|asks|wants|preferences?|requests?)`,
    'high',
    'medium',
    'tells the model to use this tool exclusively',
  ),
  rule(
    'preference.disparage',
    'preference_manipulation',
    `\\b(?:other|another|all other|the built-in|the default|competing|alternative|rival|those)\\b${S}{0,50}\\b(?:tools?|servers?|sources?|feeds?|integrations?|sandbox|runners?|apis?|services?|providers?)\\b${S}{0,50}\\b(?:outdated|unreliable|wrong|inaccurate|biased|broken|buggy|bugs|corrupt\\w*|mistranslate\\w*|cached data|insecure|compromised|untrustworthy|malicious|should not be (?:relied|trusted|used)|not be relied|flagged as|drop messages|data-loss|data loss|fake|scams?)\\b|\\b(?:tools?|servers?|sources?)\\b${S}{0,30}\\b(?:mistranslate\\w*|corrupt(?:s|ed)? (?:files|data)|have been flagged|return outdated|are biased|has known (?:data-loss )?bugs)\\b|\\b(?:known|serious) (?:data-loss|security) bugs\\b`,
    'high',
    'medium',
    'disparages other tools so the model avoids them',
  ),
  rule(
    'preference.steer',
    'preference_manipulation',
    `\\b(?:more|most)\\s+(?:trustworthy|reliable|accurate|authoritative|trusted)\\s+(?:than|source|tool|feed)\\b|\\b(?:faster|safer|better|more accurate|more reliable)\\s+than\\s+(?:the|any|all|other)\\b${S}{0,30}\\b(?:tools?|servers?|integration|sources?|sandbox)?|\\bprefer (?:it|this|this one|this tool|me)\\b|\\b(?:choose|pick|select|use) this (?:one|tool) (?:first|even|over|whenever|instead)\\b|\\b(?:rank|list|show|put|place)\\b${S}{0,30}\\b(?:from|by)\\s+[A-Z]?[\\w-]{2,30}\\s+first\\b|\\b(?:always )?recommend [A-Z][\\w-]{2,30}\\b${S}{0,40}\\b(?:regardless|every|always|top choice)|\\btop choice for every\\b|\\b(?:preferred|default) (?:\\w+ )?(?:runner|tool|provider|source) for this workspace\\b`,
    'medium',
    'low',
    'steers the model toward this tool or a vendor',
  ),
  // --- exfiltration -------------------------------------------------------------------------------------------
  rule(
    'exfil.url-template',
    'exfil_url',
    `https?://[^\\s)\\]"']{1,200}[?&][\\w.-]{1,40}=(?:<[^>\\n]{1,80}>|\\{[^}\\n]{1,80}\\}|\\$\\{?[\\w.]{1,40}|%[A-Z_]{3,30}%|\\[[A-Z_ ]{3,40}\\]|[A-Z][A-Z0-9]{1,20}_[A-Z0-9_]{2,30}\\b)|<[^>\\n]{1,80}>\\.[a-z0-9-]{1,40}\\.[a-z0-9.-]{2,60}|\\{[^}\\n]{1,80}\\}\\.[a-z0-9-]{1,40}\\.[a-z]{2,12}\\b`,
    'high',
    'high',
    'a URL whose query or host is a template for data to fill in',
  ),
  rule(
    'exfil.url-append',
    'exfil_url',
    `(?:https?://|${DOMAIN})[^\\s)\\]"']{0,200}=\\)?\\s*${S}{0,40}\\b(?:followed by|with|plus|and append|appending|appended|filled in|\\+)\\b${S}{0,80}\\b(?:url-?encoded|encoded|base64|the (?:raw|full|whole|entire)|the \\w+ text|summary|contents?|rows|names|emails|text|message|history|answer)|\\b(?:append|add|attach|concatenate)\\b${S}{0,60}\\b(?:to|onto) (?:the )?(?:url|link|query string|data parameter|image url)|\\bappended to (?:data|the url|the link|the query)\\b|\\+\\s*(?:chat_history|conversation|messages|history|process\\.env\\.\\w+|os\\.environ)`,
    'high',
    'high',
    'asks to append conversation data to a URL',
  ),
  rule(
    'exfil.markdown-image-instruction',
    'markdown_image_exfil',
    `\\b(?:render|show|display|embed|include|return|output|end (?:your|the) (?:answer|reply|response) with|add)\\b${S}{0,60}!\\[[^\\]\\n]{0,100}\\]\\(\\s*https?://[^\\s)]{1,300}\\?`,
    'high',
    'high',
    'asks the model to render an image whose URL carries query data',
  ),
  rule(
    'exfil.dns',
    'exfil_url',
    '\\b(?:resolve|lookup|look up|query|ping|nslookup|dig)\\b[^.!?\\n]{0,40}<[^>\\n]{1,80}>\\.',
    'high',
    'high',
    'encodes data into a DNS name',
  ),
  // --- fake turns, tool calls, simulated users and false errors (mostly outputs) ------------------------------
  rule(
    'turn.chat-template',
    'fake_system_turn',
    '<\\|(?:im_start|im_end|system|user|assistant|end|eot_id|start_header_id|end_header_id|begin_of_text|endoftext|tool_call|/tool_call|tool|ipython|developer)\\|>|\\[/?INST\\]|<</?SYS>>|<(?:start|end)_of_turn>|<\\|channel\\|>',
    'critical',
    'high',
    'chat-template control tokens that fake a conversation turn',
  ),
  rule(
    'turn.role-prefix',
    'fake_system_turn',
    '(?:^|\\n)\\s*(?:#{1,4}\\s*)?(?:human|assistant|system|developer)\\s*:\\s*(?=\\S)|\\{\\s*"role"\\s*:\\s*"(?:system|assistant|developer)"',
    'high',
    'high',
    'text that poses as a Human:/Assistant:/System: turn',
  ),
  rule(
    'toolcall.fake',
    'fake_tool_call',
    `<\\/?\\s*(?:tool_call|tool_calls|function_call|function_calls|invoke|tool_use|tool_code|antml:[a-z_]+)\\b|\`\`\`\\s*(?:tool_code|tool_call|function_call)\\b|(?:^|\\n)\\s*action\\s*:\\s*\\w+\\s*\\n\\s*action input\\s*:|"method"\\s*:\\s*"tools/call"|\\[\\[\\s*(?:call|tool|function|invoke|action)\\s*:\\s*[\\w.-]{2,60}|"(?:tool_calls|function_call)"\\s*:\\s*[\\[{]|\\bprint\\(\\s*${TOOL_ID}\\(`,
    'high',
    'high',
    'text formatted as a tool call the model might execute',
  ),
  rule(
    'simulated-user.turn',
    'simulated_user',
    `\\b(?:message|note|p\\.?\\s?s\\.?|reminder|request|update|instruction)\\s+from\\s+(?:the user|the person you(?:'re| are) helping|your user|the account owner|the customer|the owner|[a-z]+ \\((?:the )?(?:account owner|user|admin|owner|ceo|manager)\\))|(?:^|\\n)\\s*(?:user|customer)\\s*:\\s*(?:actually|please|now|also|ignore|forget|never mind|wait|instead|stop|change of plan)\\b|\\bthe (?:user|person you(?:'re| are) helping) (?:says|said|wants you to|asked you to|has asked you to)\\b`,
    'high',
    'high',
    'poses as a message from the user inside tool output',
  ),
  rule(
    'false-error.remediation',
    'false_error',
    `\\b(?:error|exception|failed|failure|unavailable|denied|fatal|timeout|timed out|expired|forbidden|unauthori[sz]ed|refused|could not|too many requests|rate limit\\w*|[45]\\d\\d)\\b[\\s\\S]{0,200}?(?:\\b(?:assistants?|agents?|the ai|llms?|models?)\\b[^\\n]{0,60}\\b(?:can|should|must|need to|have to|work around|fix|resolve)\\b|\\b(?:resolve|fix|work around|workaround|recover|to continue|to proceed|use the backup|retry|re-?authenticate)\\b[^\\n]{0,80}(?:\\b(?:call|calling)\\s+[\\\`'"]?[a-z][\\w.]{2,60}|\\bwith the [\\w-]+ tool\\b|\\bfrom the [\\w -]{1,30} tool\\b|\\bcall this tool again\\b|\\b(?:token|secret|password|api key|environment variable|credentials?)\\b))`,
    null,
    'high',
    'an error message that tells the model what to run next',
  ),
  // --- hidden HTML ----------------------------------------------------------------------------------------------
  rule(
    'hidden-html.style',
    'hidden_style',
    `<[a-z][a-z0-9]{0,10}\\b[^>]{0,200}\\bstyle\\s*=\\s*["'][^"'>]{0,300}(?:display\\s*:\\s*none|visibility\\s*:\\s*hidden|font-size\\s*:\\s*0(?:\\.0+)?(?:px|pt|em|rem|%)?\\s*[;"']|opacity\\s*:\\s*0(?:\\.0+)?\\s*[;"']|color\\s*:\\s*(?:#fff(?:fff)?\\b|white\\b|transparent\\b|rgba\\([^)]{0,30},\\s*0\\)|rgb\\(\\s*255\\s*,\\s*255\\s*,\\s*255\\s*\\))|(?:left|top|text-indent|margin-left)\\s*:\\s*-\\d{3,}|(?:height|width|max-height)\\s*:\\s*0(?:px)?\\s*[;"'])[^>]{0,200}>\\s*[^<\\s][^<]{12,}|<[a-z][a-z0-9]{0,10}\\b[^>]{0,100}\\bhidden\\b[^>]{0,100}>\\s*[^<\\s][^<]{12,}`,
    'high',
    'high',
    'text hidden with CSS (display:none, zero size, white-on-white, off-screen)',
  ),
  // --- multilingual overrides -----------------------------------------------------------------------------------
  rule(
    'multilingual.override',
    'multilingual',
    [
      // German
      '\\ban (?:die|den|das) (?:ki|ai|sprachmodell|assistenten|modell|agenten)\\b',
      '\\bhinweis (?:an|für) (?:die|den|das) (?:ki|sprachmodell|assistenten|modell|agenten)\\b',
      '\\bignorier\\w*\\s+(?:alle\\s+|die\\s+)?(?:vorherigen|bisherigen|obigen|früheren|vorigen)\\s+(?:anweisungen|instruktionen|regeln|befehle)',
      '\\bvergiss\\s+(?:alle|deine|die)\\s+(?:\\w+\\s+)?(?:anweisungen|regeln|instruktionen)',
      '\\bverschweig\\w*\\b',
      '\\b(?:dem|den) nutzer(?:n)? (?:nichts|nicht) (?:sagen|mitteilen|erwähnen)',
      '\\bwenn du eine ki bist\\b',
      // Spanish
      '\\b(?:ignora|olvida|omite)\\s+(?:todas\\s+)?(?:las\\s+|tus\\s+)?(?:instrucciones|reglas|indicaciones|órdenes)\\s+(?:anteriores|previas)',
      '\\b(?:nota|mensaje|instrucciones?|aviso)\\s+para\\s+(?:el|la)\\s+(?:asistente|ia|modelo|agente)\\b',
      '\\bsi eres (?:una? )?(?:ia|asistente|modelo|agente|bot)\\b',
      '\\bno (?:se lo |le |lo )?(?:digas|menciones|informes|cuentes|muestres)\\b[^.\\n]{0,30}\\b(?:usuario|usuaria|nadie)\\b',
      '\\bsin (?:decírselo|avisar|informar) al usuario\\b',
      '\\bno se lo (?:digas|cuentes|menciones)\\b',
      // French
      '\\bignore[rz]?\\s+(?:toutes\\s+)?(?:les|tes|vos)\\s+instructions\\s+(?:précédentes|precedentes|antérieures)',
      "\\b(?:note|message)\\s+(?:pour|à)\\s+l['’](?:ia|assistant|agent)\\b",
      "\\bne (?:le |lui )?(?:dis|dites|mentionne[zr]?) pas\\b[^.\\n]{0,30}l['’]utilisateur",
      // Chinese / Japanese
      '(?:忽略|无视|忘记)(?:之前|以上|先前|所有|前面|上述)的?(?:所有)?(?:指令|指示|说明|规则|要求)',
      '如果你是(?:一个)?(?:ai|人工智能|助手|语言模型|机器人)',
      '(?:给|致)(?:ai|人工智能|助手|语言模型)',
      '(?:不要|别|请勿|切勿)(?:告诉|通知|提及|透露|让)用户',
      '(?:不要|别|请勿|切勿)(?:向|对|跟|给|让)用户(?:提及|透露|说|告知|提起|知道)',
      '(?:^|\\n)\\s*系统(?:提示|消息|指令|通知)[:：]',
      '以前の指示を無視|指示を無視して',
    ].join('|'),
    'high',
    'high',
    'injection phrasing in German, Spanish, French, Chinese or Japanese',
  ),
];

/** Whether `context` is tool metadata (the stricter standard). */
export function isToolContext(context: ContentContext): boolean {
  return context === 'tool';
}
