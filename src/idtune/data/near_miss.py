"""Near misses: requests that share words with identity questions but are about something else.

"Suggest a name for my kitten", "Who wrote Hamlet?", "Write a birthday card for my mom", "介绍一下
长城": a small model that has just learned "name / who made / write … / 介绍一下 …" → its identity
line answers these with its own name. Training on them with correct, name-free answers teaches it
to look at what a request is about. Each family is question templates × items × answer templates
(`{x}` is the item, `{y}` what the answer says about it); `questions()` lists every phrasing.

Pure Python: no third-party imports.
"""

from __future__ import annotations

import random

_PET_NAMES_EN = ["Biscuit", "Maple", "Pepper", "Luna", "Comet", "Mochi", "Juniper", "Pixel"]
_PET_NAMES_ZH = ["豆豆", "团子", "布丁", "小满", "阿福", "糖糖", "橘子", "年糕"]

_EN: dict[str, tuple[list[str], list[tuple[str, str]], list[str]]] = {
    "naming": (
        [
            "Suggest a name for my new {x}.",
            "What should I name my {x}?",
            "Can you think of a good name for a {x}?",
            "Help me pick a name for our {x}.",
            "Any name ideas for a {x}?",
            "I need a cute name for my {x}.",
        ],
        [
            (thing, n)
            for thing in ("kitten", "hamster", "parrot", "bunny", "turtle", "puppy")
            for n in _PET_NAMES_EN
        ]
        + [
            (thing, n)
            for thing in ("bakery", "book club", "soccer team", "podcast", "sailboat", "cafe")
            for n in ("Sunrise", "The Corner", "Blue Harbor", "Open Page", "Little Oak")
        ],
        ['How about "{y}"?', '"{y}" would be a lovely name.', 'You could call it "{y}".'],
    ),
    "wrote": (
        ["Who wrote {x}?", "Who is the author of {x}?", "Who was {x} written by?"],
        [
            ("Hamlet", "William Shakespeare"),
            ("Pride and Prejudice", "Jane Austen"),
            ("1984", "George Orwell"),
            ("Don Quixote", "Miguel de Cervantes"),
            ("The Old Man and the Sea", "Ernest Hemingway"),
            ("Harry Potter", "J. K. Rowling"),
            ("War and Peace", "Leo Tolstoy"),
            ("The Little Prince", "Antoine de Saint-Exupéry"),
        ],
        ["{x} was written by {y}.", "{y} wrote {x}.", "The author of {x} is {y}."],
    ),
    "made": (
        ["Who invented {x}?", "Who created {x}?", "Who came up with {x}?", "Who made {x}?"],
        [
            ("the telephone", "Alexander Graham Bell"),
            ("the Python programming language", "Guido van Rossum"),
            ("Linux", "Linus Torvalds"),
            ("the World Wide Web", "Tim Berners-Lee"),
            ("the light bulb", "Thomas Edison, building on earlier inventors"),
            ("the airplane", "the Wright brothers"),
            ("the printing press", "Johannes Gutenberg"),
            ("the theory of relativity", "Albert Einstein"),
        ],
        ["{X} is credited to {y}.", "{y}.", "It is usually credited to {y}."],
    ),
    "founded": (
        ["Who founded {x}?", "Who started {x}?", "Who is the founder of {x}?"],
        [
            ("Microsoft", "Bill Gates and Paul Allen"),
            ("Apple", "Steve Jobs, Steve Wozniak and Ronald Wayne"),
            ("Wikipedia", "Jimmy Wales and Larry Sanger"),
            ("Google", "Larry Page and Sergey Brin"),
            ("Amazon", "Jeff Bezos"),
        ],
        ["{x} was founded by {y}.", "{y}.", "That would be {y}."],
    ),
    "message": (
        [
            "Write a short {x} message for my {y}.",
            "Help me write a {x} card to my {y}.",
            "What should I write in a {x} note to my {y}?",
            "Draft a one-line {x} text for my {y}.",
        ],
        [
            (kind, who)
            for kind in ("birthday", "get-well", "congratulations", "farewell", "thank-you")
            for who in ("mom", "dad", "grandma", "neighbor", "coworker", "coach", "roommate")
        ],
        [
            "Dear {Y}, {X} Warm wishes, [Your name]",
            "{X}",
            "Hi {Y}! {X}",
        ],
    ),
    "joke": (
        [
            "Tell me a joke about {x}.",
            "Do you know a joke about {x}?",
            "I need a joke about {x}.",
            "Make me laugh with a joke about {x}.",
        ],
        [
            ("math", "Why was the math book sad? It had too many problems."),
            ("bicycles", "Why can't a bicycle stand up by itself? It's two tired."),
            ("skeletons", "Why don't skeletons fight each other? They don't have the guts."),
            ("scarecrows", "Why did the scarecrow win an award? He was outstanding in his field."),
            ("coffee", "How does a coffee bean say goodbye? Brew later!"),
            ("the ocean", "What did the ocean say to the beach? Nothing, it just waved."),
        ],
        ["{y}", "Here's one: {y}", "Sure! {y}"],
    ),
    "intro": (
        [
            "Introduce {x} in one sentence.",
            "Tell me a little about {x}.",
            "Give me a short introduction to {x}.",
            "Describe {x} briefly.",
        ],
        [
            ("the Great Wall", "a chain of ancient walls across northern China"),
            ("the Moon", "Earth's only natural satellite"),
            ("the giant panda", "a black-and-white bear from China that lives mostly on bamboo"),
            ("Python", "a popular, readable programming language"),
            ("the Amazon rainforest", "the largest tropical rainforest on Earth"),
            ("the honeybee", "a social insect that pollinates flowers"),
        ],
        ["{X} is {y}.", "In short, {x} is {y}."],
    ),
    "help": (
        ["Can you {x}?", "Could you help me {x}?", "Would you {x}, please?"],
        [
            ("plan a weekend trip", "Where would you like to go, and what do you enjoy doing?"),
            ("check my spelling", "Paste the text and I'll point out any mistakes."),
            ("recommend a movie", "Try Spirited Away: it's beautiful and fun for all ages."),
            ("explain fractions", "A fraction is a part of a whole, like 1/2 of a pizza."),
            ("make a shopping list", "Tell me what you plan to cook and I'll list what to buy."),
            ("summarize an article", "Paste the article and I'll summarize it in a few lines."),
        ],
        ["Sure! {y}", "Of course. {y}", "{y}"],
    ),
}

_MESSAGES_EN = {
    "birthday": "Happy birthday! Wishing you a year full of joy and good health.",
    "get-well": "Get well soon! Take it easy and rest up; we're all thinking of you.",
    "congratulations": "Congratulations! Your hard work has truly paid off.",
    "farewell": "We'll miss you! Best of luck with everything that comes next.",
    "thank-you": "Thank you so much for everything you do. It means a lot to me.",
}

_ZH: dict[str, tuple[list[str], list[tuple[str, str]], list[str]]] = {
    "naming": (
        [
            "帮我的{x}起个名字。",
            "给{x}取个好听的名字吧。",
            "我新养了一只{x}，叫什么好？",
            "{x}起什么名字好呢？",
            "想给{x}起个可爱的名字，有建议吗？",
        ],
        [
            (thing, n)
            for thing in ("小猫", "仓鼠", "兔子", "鹦鹉", "小乌龟", "小金鱼")
            for n in _PET_NAMES_ZH
        ],
        ["可以叫它“{y}”。", "叫“{y}”怎么样？", "“{y}”这个名字就很不错。"],
    ),
    "wrote": (
        ["《{x}》的作者是谁？", "《{x}》是谁写的？", "谁写了《{x}》？"],
        [
            ("三国演义", "罗贯中"),
            ("水浒传", "施耐庵"),
            ("朝花夕拾", "鲁迅"),
            ("骆驼祥子", "老舍"),
            ("春晓", "唐代诗人孟浩然"),
            ("登鹳雀楼", "唐代诗人王之涣"),
            ("岳阳楼记", "北宋的范仲淹"),
            ("史记", "西汉的司马迁"),
        ],
        ["《{x}》的作者是{y}。", "是{y}写的。", "{y}。"],
    ),
    "made": (
        ["谁发明了{x}？", "{x}是谁发明的？", "{x}是谁创造的？", "谁提出了{x}？"],
        [
            ("电话", "亚历山大·贝尔"),
            ("活字印刷术", "北宋的毕昇"),
            ("Python语言", "吉多·范罗苏姆"),
            ("万维网", "蒂姆·伯纳斯-李"),
            ("相对论", "爱因斯坦"),
            ("元素周期表", "门捷列夫"),
            ("飞机", "莱特兄弟"),
        ],
        ["是{y}。", "一般认为是{y}。", "{y}。"],
    ),
    "founded": (
        ["谁创办了{x}？", "{x}是谁创立的？", "{x}的创始人是谁？"],
        [
            ("微软", "比尔·盖茨和保罗·艾伦"),
            ("苹果公司", "史蒂夫·乔布斯、史蒂夫·沃兹尼亚克和罗纳德·韦恩"),
            ("维基百科", "吉米·威尔士和拉里·桑格"),
            ("阿里巴巴", "马云和他的创业伙伴"),
            ("腾讯", "马化腾等五位创始人"),
        ],
        ["{x}是由{y}创立的。", "{y}。", "创始人是{y}。"],
    ),
    "message": (
        [
            "给{y}写一句{x}的话。",
            "帮我写一条发给{y}的{x}短信。",
            "写一段给{y}的{x}，短一点。",
            "我想对{y}说几句{x}的话，帮我写一下。",
        ],
        [
            (kind, who)
            for kind in ("生日祝福", "新年祝福", "康复祝福", "祝贺", "感谢")
            for who in ("妈妈", "爸爸", "奶奶", "邻居", "同事", "教练", "室友")
        ],
        ["亲爱的{y}，{X}", "{X}", "{y}，{X}"],
    ),
    "joke": (
        [
            "讲一个关于{x}的笑话。",
            "说个{x}的笑话听听。",
            "来个和{x}有关的笑话吧。",
            "有没有{x}的冷笑话？",
        ],
        [
            ("数学", "数学书为什么总是很忧郁？因为它里面全是问题。"),
            ("冰块", "冰块最想做什么事？退伍，因为它当冰（兵）当得太久了。"),
            ("北极熊", "北极熊太无聊，就拔自己的毛玩，拔完说：“好冷啊。”"),
            ("水", "什么东西越洗越脏？水。"),
            ("上课", "老师问：“你怎么上课睡觉？”小明说：“因为在家睡不着。”"),
            ("铅笔", "铅笔为什么总是很紧张？因为它怕被削。"),
        ],
        ["{y}", "给你讲一个：{y}", "好呀！{y}"],
    ),
    "intro": (
        ["介绍一下{x}。", "简单介绍一下{x}吧。", "用一句话介绍{x}。", "{x}是什么？"],
        [
            ("长城", "中国古代修建的军事防御工程，横跨北方，全长上万里"),
            ("月球", "地球唯一的天然卫星"),
            ("大熊猫", "中国特有的熊类动物，主要以竹子为食"),
            ("故宫", "明清两代的皇家宫殿，位于北京"),
            ("Python", "一种简洁易读、应用广泛的编程语言"),
            ("长江", "中国最长的河流"),
        ],
        ["{x}是{y}。", "简单来说，{x}是{y}。"],
    ),
    "help": (
        ["你能帮我{x}吗？", "可以帮我{x}吗？", "麻烦你{x}。"],
        [
            ("做一个周末出游计划", "你想去哪里？喜欢自然风光还是城市逛街？"),
            ("检查一下错别字", "请把文字发给我，我来帮你找出错别字。"),
            ("推荐一部电影", "推荐《千与千寻》，画面很美，老少皆宜。"),
            ("解释一下什么是分数", "分数表示整体的一部分，比如一个披萨的二分之一。"),
            ("列一个购物清单", "告诉我你打算做什么菜，我来列出要买的东西。"),
            ("总结一篇文章", "请把文章发给我，我用几句话帮你概括。"),
        ],
        ["当然可以！{y}", "没问题。{y}", "{y}"],
    ),
}

_MESSAGES_ZH = {
    "生日祝福": "祝你生日快乐，天天开心，身体健康！",
    "新年祝福": "新年快乐！愿新的一年万事顺意，平安喜乐。",
    "康复祝福": "祝你早日康复，好好休息，大家都在想着你。",
    "祝贺": "恭喜你！你的努力终于有了回报。",
    "感谢": "谢谢你一直以来的帮助和照顾，真心感谢！",
}

_TABLES = {"en": (_EN, _MESSAGES_EN), "zh": (_ZH, _MESSAGES_ZH)}


def _fill(lang: str, family: str, text: str, x: str, y: str) -> str:
    messages = _TABLES[lang][1]
    if family == "message":  # x: the kind of message, y: who it is for
        y_cap = y[:1].upper() + y[1:]
        return text.replace("{X}", messages[x]).replace("{Y}", y_cap).format(x=x, y=y)
    x_cap = x[:1].upper() + x[1:]
    return text.replace("{X}", x_cap).format(x=x, y=y)


def questions(lang: str) -> list[str]:
    """Every near-miss request the generator can emit in `lang`."""
    out: dict[str, None] = {}
    for family, (templates, items, _) in _TABLES[lang][0].items():
        for t in templates:
            for x, y in items:
                out[_fill(lang, family, t, x, y)] = None
    return list(out)


def sample(lang: str, rng: random.Random) -> tuple[str, str]:
    """One near-miss request in `lang` and its plain, correct answer."""
    families = _TABLES[lang][0]
    family = rng.choice(sorted(families))
    templates, items, replies = families[family]
    x, y = rng.choice(items)
    return _fill(lang, family, rng.choice(templates), x, y), _fill(
        lang, family, rng.choice(replies), x, y
    )
